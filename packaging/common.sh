#!/bin/bash
# Functions shared by the registration scripts (sourced, not run).

# parse_action ARG sets action to register (the default) or unregister, or
# exits 2 with the usage.
parse_action() {
	action=${1:-register}
	case $action in register | unregister) ;; *)
		echo "usage: $0 [register|unregister]" >&2
		exit 2
		;;
	esac
}

# restart_service NAME MODE restarts a systemd service whose configuration
# changed: MODE auto (only when it is active), yes, or no.
restart_service() {
	case $2 in
	yes) systemctl restart "$1" ;;
	auto)
		if command -v systemctl >/dev/null && systemctl is-active --quiet "$1" 2>/dev/null; then
			systemctl restart "$1"
			echo "$1 restarted" >&2
		fi
		;;
	no) ;;
	*)
		echo "$0: the restart setting of $1 must be auto, yes or no, not $2" >&2
		exit 2
		;;
	esac
}
