"""Hosts for `scripts/testnet up --hosts`: each node in a network namespace of its own (its own
IP and TCP stack) on one bridge, optionally behind a rate limit, and partitions made by
dropping packets between namespaces rather than by asking the nodes.

Names carry a tag made from the testnet's directory, so two testnets do not collide and
`cleanup` finds everything of one testnet even when the script that made it crashed:
  bridge apb<tag>, namespaces apn<tag>-<i>, host ends of the veth pairs apv<tag>-<i>
  (the namespace end is eth0), subnet 10.213.<n>.0/24 with the bridge at .1, node i at .(10+i).

Needs root (ip, tc). The kernel here has no netem, so links get a rate and no added latency.
"""
import hashlib, os, re, shutil, subprocess

SUBNET = "10.213"


def tag_of(directory):
    return hashlib.sha256(str(directory).encode()).hexdigest()[:4]


def bridge(tag):
    return f"apb{tag}"


def namespace(tag, index):
    return f"apn{tag}-{index}"


def veth(tag, index):
    return f"apv{tag}-{index}"


def octet(tag):
    return int(tag, 16) % 200 + 20


def ip_of(tag, index):
    return f"{SUBNET}.{octet(tag)}.{10 + index}"


def run(*args):
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}`: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def require_root():
    if os.geteuid() != 0:
        raise RuntimeError("--hosts needs root: network namespaces, veth pairs and tc (run it with sudo)")


def parse_rate(text):
    """tc's rate words (500kbit, 10mbit, 1gbit): checked here so a typo is one clear line."""
    match = re.fullmatch(r"(\d+)(kbit|mbit|gbit)", text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"--link-rate {text!r}: a rate such as 10mbit, 100mbit or 500kbit")
    return text


def rate_bytes(rate):
    number, unit = re.fullmatch(r"(\d+)(kbit|mbit|gbit)", rate).groups()
    return int(number) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[unit] / 8


def shape(device, rate, ns=None):
    """At most `rate` out of `device`, as a real link would: htb with a burst of a
    millisecond at the rate (3 kB at least), and segments no larger than a packet (by
    default veth hands over up to 64 kB at once, which would leave any shaper half a
    block late or early)."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    run(*prefix, "ip", "link", "set", "dev", device, "gso_max_size", "1500", "gso_max_segs", "1")
    burst = str(max(3000, int(rate_bytes(rate) / 1000)))
    # The htb root stays once there (replacing it with itself is refused); its class sets the rate.
    subprocess.run([*prefix, "tc", "qdisc", "replace", "dev", device, "root", "handle", "1:", "htb", "default", "10"],
                   capture_output=True)
    run(*prefix, "tc", "class", "replace", "dev", device, "parent", "1:", "classid", "1:10", "htb",
        "rate", rate, "ceil", rate, "burst", burst, "cburst", burst)


def create(tag, count, rate=None):
    """The bridge and `count` namespaces, each node's link at `rate` both ways."""
    require_root()
    cleanup(tag)
    net = f"{SUBNET}.{octet(tag)}"
    run("ip", "link", "add", bridge(tag), "type", "bridge")
    run("ip", "addr", "add", f"{net}.1/24", "dev", bridge(tag))
    run("ip", "link", "set", bridge(tag), "up")
    # Where Docker runs, bridged packets pass iptables' FORWARD chain, whose policy it sets
    # to DROP: let this bridge's own traffic through.
    if shutil.which("iptables"):
        run("iptables", "-I", "FORWARD", *forward_rule(tag))
    for index in range(count):
        ns, host_end = namespace(tag, index), veth(tag, index)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", host_end, "master", bridge(tag), "up")
        run("ip", "-n", ns, "addr", "add", f"{ip_of(tag, index)}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
        if rate:
            shape(host_end, rate)  # towards the node
            shape("eth0", rate, ns)  # from the node


def forward_rule(tag):
    return ["-i", bridge(tag), "-o", bridge(tag), "-j", "ACCEPT",
            "-m", "comment", "--comment", f"apiary testnet {tag}"]


def resolver(tag, index, nameserver):
    """Node `index`'s own /etc/resolv.conf (`ip netns exec` mounts /etc/netns/<ns>/ over
    /etc): its names are asked of `nameserver`."""
    path = f"/etc/netns/{namespace(tag, index)}"
    os.makedirs(path, exist_ok=True)
    with open(f"{path}/resolv.conf", "w") as f:
        f.write(f"nameserver {nameserver}\n")


def cleanup(tag):
    """Removes every namespace, veth pair, qdisc and the bridge of `tag`, whatever is left."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"apn{tag}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"apv{tag}-") or name == bridge(tag):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
    if os.path.isdir("/etc/netns"):
        for name in os.listdir("/etc/netns"):
            if name.startswith(f"apn{tag}-"):
                shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
    if shutil.which("iptables"):
        while subprocess.run(["iptables", "-D", "FORWARD", *forward_rule(tag)],
                             capture_output=True).returncode == 0:
            pass


def partition(tag, groups):
    """Packets between nodes of different groups are refused by each side's routing table
    (a prohibit route): connections stall as on a cut cable, nobody is told."""
    for a, group in enumerate(groups):
        for b, other in enumerate(groups):
            if a != b:
                for i in group:
                    for j in other:
                        subprocess.run(["ip", "-n", namespace(tag, i), "route", "replace", "prohibit",
                                        f"{ip_of(tag, j)}/32"], capture_output=True, check=True)


def heal(tag, count):
    """Removes every partition route; stalled connections carry on where they stopped."""
    for index in range(count):
        ns = namespace(tag, index)
        routes = subprocess.run(["ip", "-n", ns, "route", "show", "type", "prohibit"],
                                capture_output=True, text=True).stdout
        for line in routes.splitlines():
            target = line.split()[1] if len(line.split()) > 1 else ""
            if target:
                subprocess.run(["ip", "-n", ns, "route", "del", "prohibit", target], capture_output=True)

