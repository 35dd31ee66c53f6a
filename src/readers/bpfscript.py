"""The bpftrace program of readers.accepts_bpf (what it counts and why: that module's
docstring; the events on the ports: readers.portquiet)."""

from __future__ import annotations

TRACEPOINTS = ("sys_exit_accept4", "sys_exit_accept")
# the maps are printed when the reader asks: getpriority(WHICH, N) with WHICH a number of
# its own (no valid `which`: the call fails at once, EINVAL) prints them, then "tick N"
FLUSH_TRACEPOINT = "sys_enter_getpriority"

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
    flush_key: int,
    ports: tuple[int, ...] = (),
    netns: int | None = None,
    changes: bool = False,
    monitor: int | None = None,
) -> str:
    """The bpftrace program: accepts per (pid, tid), its maps printed on request (a
    getpriority(`flush_key`, N) by anyone prints them and "tick N"); with `ports`, queue
    wait per pid, of the sockets on those ports in the network namespace whose inode is
    `netns` (any when None: a port is a namespace's own, and every container may have
    its port 8000), and with `changes` too, the events on those ports' sockets (@ch).
    With `ports`, the connections process `monitor` (ours: its mod_status polls) makes
    to them are neither accepts nor queue wait: its connect's SYN_SENT names the client
    port (@o), the server side's handshake with that peer port marks the socket (@m),
    and its accept is left out."""
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
        theirs = " || ".join(f"args->dport == {int(p)}" for p in ports)
        if netns is not None:
            theirs = f"({theirs}) && {inum} == {int(netns)}"
        # a connect of ours to the ports (SYN_SENT, in its own context: pid is ours; the
        # port is bound before connect, so it is known here), and its end
        ours = (
            f"  else if (args->newstate == 2 && pid == {int(monitor)} && ({theirs})) {{\n"
            "    @o[args->sport] = 1;\n"
            "  }\n"
            if monitor is not None
            else ""
        )
        mark = (
            "    if (@o[args->dport]) { delete(@o[args->dport]); "
            f"@m[{sk}] = 1; }} else {{ @p[{sk}] = 1; }}\n"
            if monitor is not None
            else f"    @p[{sk}] = 1;\n"
        )
        # @ch: events that change what a dump of the ports' connections shows (readers.
        # portquiet): a state change, data in, data read, data sent (the socket's local
        # port read through BTF), a half-open one's SYN-ACK retransmitted
        own = " || ".join(f"$s->__sk_common.skc_num == {int(p)}" for p in ports)
        if netns is not None:
            own = f"({own}) && $s->__sk_common.skc_net.net->ns.inum == {int(netns)}"
        out += (
            "tracepoint:sock:inet_sock_set_state {\n"
            f"  if (args->newstate == 7) {{ delete(@p[{sk}]);"
            + (
                f" delete(@m[{sk}]); if ({theirs}) {{ delete(@o[args->sport]); }}"
                if monitor
                else ""
            )
            + " }\n"
            f"  else if (args->oldstate == 3 && args->newstate == 1 && ({mine})) {{\n"
            f"{mark}"
            "  }\n" + ours + (f"  if ({mine}) {{ @ch = count(); }}\n" if changes else "") + "}\n"
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
            "  $file = *(curtask->files->fdt->fd + args->ret);\n"
            "  $sk = (uint64)((struct socket *)$file->private_data)->sk;\n"
            + (
                "  if (@m[$sk]) { delete(@m[$sk]); return; }  // the monitor's own\n"
                if monitor is not None
                else ""
            )
            + "  @a[pid, tid] = count();\n"
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
    # on request, not every period: printing the maps 4 times a second was most of
    # bpftrace's own CPU, and a flush asked for by a sample is as fresh as the sample
    out += (
        f"tracepoint:syscalls:{FLUSH_TRACEPOINT} /args->which == {int(flush_key)}/ "
        f'{{ {prints} printf("tick %d\\n", args->who); }}\n'
    )
    return out
