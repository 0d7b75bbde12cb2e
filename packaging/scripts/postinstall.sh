#!/bin/sh
# Makes systemd see the new or changed unit; starts and enables nothing.
# Without systemd as init (containers, chroots) there is nothing to tell.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
