"""The bpftrace program of readers.accepts_bpf (what it counts and why: that module's
docstring; the events on the ports: readers.portquiet)."""

from __future__ import annotations

TRACEPOINTS = ("sys_exit_accept4", "sys_exit_accept")

# plumbing.loghist.index_of in bpftrace: $us (microseconds) -> $i; bit length by halving
LOGHIST_INDEX = """\
    $i = $us;
    if ($us >= 16) {
      if ($us > 134217727) { $us = 134217727; }
      $v = $us; $b = (uint64)1;
      if ($v >= 65536) { $b = $b + 16; $v = $v >> 16; }
      if ($v >= 256) { $b = $b + 8; $v = $v >> 8; }
      if ($v >= 16) { $b = $b + 4; $v = $v >> 4; }
      if ($v >= 4) { $b = $b + 2; $v = $v >> 2; }
      if ($v >= 2) { $b = $b + 1; }
      $s = $b - 4;
      $i = $s * 8 + ($us >> $s);
    }
"""


def script(
    root: int,
    period_ms: int,
    ports: tuple[int, ...] = (),
    netns: int | None = None,
    changes: bool = False,
) -> str:
    """The bpftrace program: accepts per (pid, tid); with `ports`, queue wait per pid, of
    the sockets on those ports in the network namespace whose inode is `netns` (any when
    None: a port is a namespace's own, and every container may have its port 8000), and
    with `changes` too, the events on those ports' sockets (@ch)."""
    probes = ", ".join(f"tracepoint:syscalls:{tp}" for tp in TRACEPOINTS)
    who = (
        f"pid == {root} || curtask->real_parent->tgid == {root} || "
        f"curtask->real_parent->real_parent->tgid == {root}"
    )
    out = 'BEGIN { printf("ready\\n"); }\n'
    if not ports:
        out += f"{probes} /args->ret >= 0 && ({who})/ {{ @a[pid, tid] = count(); }}\n"
        prints = "print(@a);"
    else:  # one program per tracepoint: each costs ~50 ns a run, on every socket
        mine = " || ".join(f"args->sport == {int(p)}" for p in ports)
        if netns is not None:
            inum = "((struct sock *)args->skaddr)->__sk_common.skc_net.net->ns.inum"
            mine = f"({mine}) && {inum} == {int(netns)}"
        sk = "(uint64)args->skaddr"
        # @ch: events that change what a dump of the ports' connections shows (readers.
        # portquiet): a state change, data in, data read, data sent (the socket's local
        # port read through BTF), a half-open one's SYN-ACK retransmitted
        own = " || ".join(f"$s->__sk_common.skc_num == {int(p)}" for p in ports)
        if netns is not None:
            own = f"({own}) && $s->__sk_common.skc_net.net->ns.inum == {int(netns)}"
        out += (
            "tracepoint:sock:inet_sock_set_state {\n"
            f"  if (args->newstate == 7) {{ delete(@p[{sk}]); }}\n"
            f"  else if (args->oldstate == 3 && args->newstate == 1 && ({mine})) {{\n"
            f"    @p[{sk}] = 1;\n"
            "  }\n" + (f"  if ({mine}) {{ @ch = count(); }}\n" if changes else "") + "}\n"
            "tracepoint:sock:sk_data_ready {\n"
            f"  if (@p[{sk}] == 1) {{ @p[{sk}] = nsecs; }}\n"
            + (
                f"  $s = (struct sock *)args->skaddr;\n  if ({own}) {{ @ch = count(); }}\n"
                if changes
                else ""
            )
            + "}\n"
        )
        if changes:
            out += (
                f"tracepoint:tcp:tcp_retransmit_synack /{mine}/ {{ @ch = count(); }}\n"
                f"tracepoint:tcp:tcp_rcv_space_adjust /{mine}/ {{ @ch = count(); }}\n"
                "tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ {\n"
                "  $s = (struct sock *)args->sk;\n"
                f"  if ({own}) {{ @ch = count(); }}\n"
                "}\n"
            )
        out += (
            f"{probes} /args->ret >= 0 && ({who})/ {{\n"
            "  @a[pid, tid] = count();\n"
            "  $file = *(curtask->files->fdt->fd + args->ret);\n"
            "  $sk = (uint64)((struct socket *)$file->private_data)->sk;\n"
            "  $t = @p[$sk];\n"
            "  if ($t) {\n"
            "    delete(@p[$sk]);\n"
            "    $us = (uint64)0;\n"
            "    if ($t > 1) { $us = (nsecs - (uint64)$t) / 1000; }\n"
            f"{LOGHIST_INDEX}"
            "    @qh[pid, $i] = count(); @qs[pid] = sum($us); @qm[pid] = max($us);\n"
            "  }\n"
            "}\n"
        )
        prints = "print(@a); print(@qh); print(@qs); print(@qm);" + (" print(@ch);" * changes)
    out += f'interval:ms:{period_ms} {{ {prints} printf("tick\\n"); }}\n'
    return out
