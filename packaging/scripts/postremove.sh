#!/bin/sh
# After removal: systemd forgets the unit. On a Debian purge the state
# directory goes too (/var/lib/memfrag-exporter; with the default unit's
# DynamicUser= systemd keeps it under /var/lib/private and links it).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ "$1" = "purge" ]; then
	rm -rf /var/lib/memfrag-exporter /var/lib/private/memfrag-exporter
fi
