"""Print the names zachot-gen reserves for the base system and common packages, one per line.

Usage: python3 scripts/reserved_names.py > generator/reserved_names.txt (then review the diff).

The list is what a Debian server already uses as a name: the entries of /etc, /var/lib,
/var/log, /var/cache, /var/spool, /run, the unit folders, tmpfiles.d, sysusers.d,
logrotate.d and init.d of the machine this runs on (suffixes such as .d, .conf, .service
dropped), the accounts of base-passwd and of this machine, plus the common server packages
below that the machine may lack. A project named like one of them would render files and
folders that mask, replace or take over that package's (see generator/reserved.py).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from generator.reserved import stem  # noqa: E402

FOLDERS = ("/etc", "/etc/default", "/etc/init.d", "/etc/logrotate.d", "/etc/systemd/system", "/run",
           "/usr/lib/systemd/system", "/usr/lib/systemd/user", "/usr/lib/sysusers.d", "/usr/lib/tmpfiles.d",
           "/var/cache", "/var/lib", "/var/log", "/var/spool")  # fmt: skip
ACCOUNTS = ("/etc/passwd", "/etc/group", "/usr/share/base-passwd/passwd.master", "/usr/share/base-passwd/group.master")
COMMON = """
admin anacron apache2 apparmor at audit auditd avahi bind9 caddy certbot chrony chronyd cloud-init consul containerd
cron cups dnsmasq docker dockerd dovecot elasticsearch etcd exim4 fail2ban filebeat firewalld gitea gitlab grafana
grub haproxy httpd influxdb initramfs-tools iptables jenkins k3s keydb kibana kubelet letsencrypt libvirt
libvirt-qemu libvirtd logstash lxc lxd mariadb memcached minio mongod mongodb mysql named netplan networkd
networkmanager nfs nftables nginx node node_exporter nodejs nomad npm ntp ntpsec openvpn openssh php php-fpm
pgbouncer prometheus rabbitmq rabbitmq-server rsync rsyslog ruby samba snapd sshd ssl-cert sudoers supervisor
supervisord syslog-ng tailscale tailscaled telegraf tomcat tomcat9 ufw unattended-upgrades valkey vault wheel
wireguard wg-quick zabbix zabbix-agent zerotier
input kvm render sgx netdev tss crontab lpadmin mlocate plocate uuidd i2c gpio debian-exim postdrop postfix
bind unbound squid varnish slapd openldap mdadm lvm2 keepalived memcache systemd-journal systemd-network
messagebus polkitd ssh _ssh bluetooth scanner pulse pulse-access geoclue colord saned rtkit dnsmasq clamav
amavis opendkim spamd debian-spamd redis postgres postgresql dovecot dovenull vmail ftp proftpd vsftpd nagios
icinga munin ceph glusterfs qemu libvirt-dnsmasq
""".split()
OWN = {"app", "zachot-test-server"}  # made by this project's own tests on the machine, not by Debian
def main() -> None:
    names = set(COMMON)
    for folder in FOLDERS:
        if os.path.isdir(folder):
            names |= {stem(n) for n in os.listdir(folder) if not n.startswith(".")}
    for file in ACCOUNTS:
        if os.path.exists(file):
            with open(file) as fh:
                names |= {line.split(":")[0] for line in fh if ":" in line}
    names = {n for n in names - OWN if re.fullmatch(r"[a-z][a-z0-9_.+-]*", n)}
    print("\n".join(sorted(names)))


if __name__ == "__main__":
    main()
