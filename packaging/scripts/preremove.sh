#!/bin/sh
# Before the package goes away (not on upgrade): stop the service if it
# runs and remove the symlinks `systemctl enable` made, so nothing is left
# pointing at a removed unit. Debian passes "remove", RPM 0.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop memfrag-exporter.service || true
	fi
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable memfrag-exporter.service >/dev/null 2>&1 || true
	fi
	;;
esac
