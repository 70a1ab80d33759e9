"""The test network: one Linux network namespace per broker and one for the clients, joined by
veth pairs to a bridge that lives in a namespace of its own.

    hwj-n1 (10.77.0.1) --veth--+
    hwj-n2 (10.77.0.2) --veth--+-- br0 in hwj-hub
    ...                        |
    hwj-c  (10.77.0.100) -veth-+

Nothing is created in the root namespace, so tearing down is deleting the namespaces (after
killing whatever still runs inside them). Faults are iptables rules inside the nodes' namespaces:
a partition drops packets in the kernel, the sender sees a silent peer, not a closed socket.
"""

import subprocess

PREFIX = "hwj-"
HUB = PREFIX + "hub"
CLIENTS = PREFIX + "c"
SUBNET = "10.77.0"
CLIENT_ADDR = f"{SUBNET}.100"


def node_ns(node_id):
    return f"{PREFIX}n{node_id}"


def node_addr(node_id):
    return f"{SUBNET}.{node_id}"


def run(*args, check=True):
    """Runs a command, raising with its stderr when it fails and `check` is set."""
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def in_ns(ns, *args, check=True):
    return run("ip", "netns", "exec", ns, *args, check=check)


def existing_namespaces():
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


class Network:
    """The namespaces of one run. `create` builds them; `destroy` removes every namespace with
    the harness's prefix, whoever made it, so a run cleans up after a crashed one too."""

    def __init__(self, node_ids):
        self.node_ids = list(node_ids)

    def create(self):
        destroy_all()
        run("ip", "netns", "add", HUB)
        in_ns(HUB, "ip", "link", "set", "lo", "up")
        in_ns(HUB, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(HUB, "ip", "link", "set", "br0", "up")
        for n in self.node_ids:
            self._attach(node_ns(n), f"p{n}", node_addr(n))
        self._attach(CLIENTS, "pc", CLIENT_ADDR)

    def _attach(self, ns, port, addr):
        run("ip", "netns", "add", ns)
        inside = "eth0"
        run("ip", "link", "add", port, "netns", HUB, "type", "veth", "peer", "name", inside,
            "netns", ns)
        in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", inside)
        in_ns(ns, "ip", "link", "set", inside, "up")
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(HUB, "ip", "link", "set", port, "master", "br0")
        in_ns(HUB, "ip", "link", "set", port, "up")

    # --- faults --------------------------------------------------------------------------------

    def drop_from(self, node_id, sources):
        """`node_id` stops receiving packets from each node in `sources` (one way)."""
        for s in sources:
            in_ns(node_ns(node_id), "iptables", "-A", "INPUT", "-s", node_addr(s), "-j", "DROP")

    def lose(self, node_id, probability):
        """`node_id` drops each incoming packet with `probability`."""
        in_ns(node_ns(node_id), "iptables", "-A", "INPUT", "-m", "statistic", "--mode",
              "random", "--probability", f"{probability:.3f}", "-j", "DROP")

    def heal(self):
        """Removes every rule the faults added."""
        for n in self.node_ids:
            in_ns(node_ns(n), "iptables", "-F", "INPUT", check=False)


def kill_inside(ns):
    """SIGKILLs every process in `ns` (they would keep the namespace alive after `ip netns
    del`)."""
    out = run("ip", "netns", "pids", ns, check=False).stdout
    for pid in out.split():
        run("kill", "-CONT", pid, check=False)
        run("kill", "-KILL", pid, check=False)


def destroy_all():
    """Kills what runs in the harness's namespaces and deletes them. Safe to call any time."""
    for ns in existing_namespaces():
        kill_inside(ns)
    for ns in existing_namespaces():
        run("ip", "netns", "del", ns, check=False)
