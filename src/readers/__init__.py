"""Readers of what the kernel and a server say about themselves: /proc, netlink sock_diag,
socket owners, eBPF accepts, the process tree, how workers wait on a listener, Apache's
mod_status and what kind of server a tree is. Each reads; none judges or draws."""
