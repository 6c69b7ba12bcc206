#!/bin/sh
# init of a lab node: a User-Mode-Linux kernel whose root is the host's / (hostfs, read-only).
# The kernel passes TFNODE_DIR (from its command line) in the environment; node.env there
# (written by lab.py) names the node, its address, Python and the agent.  Prepares a
# node-local /run, /var/lib/nfs and /mnt (/mnt/nfs: the mount point; /mnt/local: node-local
# scratch and TMPDIR; /tmp stays the host's, read-only, as the repository may live there) and
# /dev/shm (multiprocessing),
# loads the NFS client modules, starts the network, rpcbind and rpc.statd (NLM locks on
# NFSv3 need both), then becomes the command agent.
# Any failure powers the node off; the host then shows this console's output.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
fail() {
    echo "node_init: FAILED: $*"
    echo o > /proc/sysrq-trigger
    exit 1
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
for dir in /run /var/lib/nfs /mnt; do
    mount -t tmpfs -o mode=1777 tmpfs "$dir" || fail "tmpfs on $dir"
done
# multiprocessing's shared memory (the farmer's RawArrays) needs /dev/shm; the kernel's own
# devtmpfs on /dev has none.
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "tmpfs on /dev/shm"
mkdir -p /var/lib/nfs/sm /var/lib/nfs/sm.bak /run/rpcbind /mnt/nfs /mnt/local
# The node directory (on the host, in the test's tmp dir) read-write, at the same path.
mount -t hostfs -o "$TFNODE_DIR" hostfs "$TFNODE_DIR" || fail "hostfs $TFNODE_DIR"
. "$TFNODE_DIR/node.env" || fail "read $TFNODE_DIR/node.env"
hostname "$TFNODE_NAME"
modules=/usr/lib/uml/modules/$(uname -r)/kernel
# In dependency order (modules.dep); busybox's insmod: the host may have no kmod.
for module in net/sunrpc/sunrpc fs/nfs_common/grace fs/lockd/lockd fs/netfs/netfs \
        fs/fscache/fscache fs/nfs_common/nfs_acl fs/nfs/nfs fs/nfs/nfsv3 \
        net/dns_resolver/dns_resolver fs/nfs/nfsv4; do
    busybox insmod "$modules/$module.ko" || fail "insmod $module"
done
ip link set lo up || fail "lo up"
ip addr add "$TFNODE_ADDR" dev vec0 || fail "address on vec0"
ip link set vec0 up || fail "vec0 up"
rpcbind -w || fail "rpcbind"
rpc.statd -L || fail "rpc.statd"
exec "$TFNODE_PYTHON" "$TFNODE_AGENT" "$TFNODE_DIR"
