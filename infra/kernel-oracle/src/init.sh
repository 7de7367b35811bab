#!/bin/busybox sh
# /init of the dmfrag kernel-oracle initramfs: runs ONE workload per boot, named by
# wl=... on the kernel command line, and prints "@@ORACLE ..." lines on the console.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

wl=$(sed -n 's/.*[ ]wl=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "@@ORACLE BEGIN wl=$wl"
/oracle meta
dmesg | grep -E 'BIOS-e820|e820: (update|remove)|reserve setup_data' | sed 's/^\[[^]]*\] */@@ORACLE E820 /'

# the zones and free lists at boot, for building simulator machine configs
grep -E '^Node|^ +(spanned|present|managed)|start_pfn' /proc/zoneinfo | tr -s ' ' | sed 's/^ */@@ORACLE ZONEINFO /'
tr -s ' ' < /proc/buddyinfo | sed 's/^/@@ORACLE BUDDYINFO /'

ev() { echo "@@ORACLE EVENT $*"; }
run() { ev "RUN $*"; "$@"; rc=$?; ev "RC $rc"; return $rc; }
ro() { /oracle readout "$1"; }

ro boot
T=/sys/kernel/tracing

case "$wl" in
idle)
	sleep 5
	ro idle_5s
	;;
secretmem:*)
	run /oracle secretmem "${wl#secretmem:}"
	;;
bpf:*)
	spec=${wl#bpf:}
	echo 1 > /proc/sys/net/core/bpf_jit_enable
	ev "bpf_jit_enable=$(cat /proc/sys/net/core/bpf_jit_enable)"
	run /oracle bpf "${spec%x*}" "${spec#*x}" "bpf_$spec"
	;;
modules)
	loaded=""
	for m in $(cat /modules.txt); do
		if insmod "/lib/modules/$m.ko" 2>/tmp/err; then
			loaded="$(echo $m | tr - _) $loaded"
			ev "insmod $m ok"
		else
			ev "insmod $m failed: $(cat /tmp/err)"
		fi
	done
	ev "loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
	ro modules_loaded
	for m in $loaded; do
		rmmod "$m" 2>/tmp/err || ev "rmmod $m failed: $(cat /tmp/err)"
	done
	ev "after rmmod: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
	ro modules_unloaded
	;;
kprobe)
	# a probe not at offset 0 (the fentry site, where kprobes use ftrace) needs
	# an instruction slot: try offsets until one is an instruction boundary
	n=0
	for f in vfs_read vfs_write do_sys_openat2 ksys_write; do
		for off in 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			if echo "p:oracle/kp$n $f+$off" >> $T/kprobe_events 2>/dev/null; then
				ev "kprobe kp$n at $f+$off"
				n=$((n + 1))
				break
			fi
		done
	done
	echo 1 > $T/events/oracle/enable && ev "kprobes enabled: $n"
	cat /proc/sys/kernel/pid_max > /dev/null; ls / > /dev/null
	# (do not read $T/trace here: reading it fires the vfs_read probe, which
	# appends to the buffer being read, and the read never ends)
	ev "kprobe_profile: $(tr -s ' ' < $T/kprobe_profile | tr '\n' ';')"
	ro kprobes_enabled
	echo 0 > $T/events/oracle/enable
	echo > $T/kprobe_events && ev "kprobes removed"
	ro kprobes_removed
	;;
ftrace)
	echo vfs_read > $T/set_ftrace_filter
	echo vfs_write >> $T/set_ftrace_filter
	echo function > $T/current_tracer && ev "tracer=$(cat $T/current_tracer) filter=$(cat $T/set_ftrace_filter | tr '\n' ' ')"
	ls / > /dev/null
	ro ftrace_function
	echo nop > $T/current_tracer
	echo > $T/set_ftrace_filter
	echo vfs_read > $T/set_graph_function
	echo vfs_write >> $T/set_graph_function
	echo function_graph > $T/current_tracer && ev "tracer=$(cat $T/current_tracer) graph=$(cat $T/set_graph_function | tr '\n' ' ')"
	ls / > /dev/null
	ro ftrace_graph
	echo nop > $T/current_tracer
	echo > $T/set_graph_function
	ev "tracer=$(cat $T/current_tracer)"
	ro ftrace_off
	;;
*)
	ev "unknown workload '$wl'"
	;;
esac

/oracle vmalloc
echo "@@ORACLE DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
