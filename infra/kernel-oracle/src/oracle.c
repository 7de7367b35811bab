// SPDX-License-Identifier: GPL-2.0-only
/*
 * oracle — the guest side of the dmfrag kernel oracle (runs as a static binary
 * in the initramfs, as root, one workload per boot).
 *
 *   oracle readout LABEL        print one "@@ORACLE READOUT {json}" line
 *   oracle meta                 print one "@@ORACLE META {json}" line
 *   oracle vmalloc              print one "@@ORACLE VMALLOC [json]" line
 *   oracle secretmem N          memfd_secret N pages; readouts secretmem_N_mapped/_freed
 *   oracle bpf N I LABEL        load N socket filters of ~I insns; LABEL_loaded/_closed
 *
 * A readout holds /proc/vmstat direct_map_level{2,3}_splits, /proc/meminfo
 * DirectMap{4k,2M,1G}, and a walk of the direct map's page tables read through
 * /proc/kcore (Debian kernels have no CONFIG_PTDUMP_DEBUGFS): the top-level
 * table is init_top_pgt (from /proc/kallsyms), kernel virtual addresses are
 * translated to file offsets with /proc/kcore's ELF program headers, and every
 * lower table is read at page_offset_base + its physical address.
 *
 * Field names follow shared/reference/oracle-6.1-2G.json.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif

#define PTE_P   (1ULL << 0)
#define PTE_RW  (1ULL << 1)
#define PTE_PS  (1ULL << 7)
#define PTE_NX  (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL

/* ---------------------------------------------------------------- output */

static char *obuf;
static size_t olen, ocap;

static void out(const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(obuf + olen, ocap - olen, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < ocap - olen) {
			olen += n;
			return;
		}
		ocap = ocap ? ocap * 2 : 1 << 16;
		obuf = realloc(obuf, ocap);
		if (!obuf)
			exit(3);
	}
}

static void out_begin(void)
{
	olen = 0;
	out("%s", "");
}

/* one write() per line, so that console messages interleave less */
static void out_flush(void)
{
	size_t off = 0;
	while (off < olen) {
		ssize_t n = write(1, obuf + off, olen - off);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		off += n;
	}
	olen = 0;
}

static void jstr(const char *s)
{
	out("\"");
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == '"' || c == '\\')
			out("\\%c", c);
		else if (c < 0x20)
			out("\\u%04x", c);
		else
			out("%c", c);
	}
	out("\"");
}

static void event(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("@@ORACLE EVENT %s\n", buf);
	fflush(stdout);
}

/* ----------------------------------------------------------- proc files */

static long long proc_value(const char *path, const char *key, int colon)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t kl = strlen(key);
	long long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) == 0 &&
		    (colon ? line[kl] == ':' : line[kl] == ' ')) {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static double uptime(void)
{
	FILE *f = fopen("/proc/uptime", "r");
	double u = -1;
	if (f) {
		if (fscanf(f, "%lf", &u) != 1)
			u = -1;
		fclose(f);
	}
	return u;
}

static uint64_t kallsym(const char *name)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[512], sym[256], type;
	unsigned long long a;
	uint64_t r = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx %c %255s", &a, &type, sym) == 3 &&
		    strcmp(sym, name) == 0) {
			r = a;
			break;
		}
	}
	fclose(f);
	return r;
}

/* ---------------------------------------------------------------- kcore */

struct seg { uint64_t va, size, off; };
static struct seg *segs;
static int nsegs;
static int kfd = -1;

static int kcore_open(void)
{
	Elf64_Ehdr eh;
	kfd = open("/proc/kcore", O_RDONLY);
	if (kfd < 0)
		return -1;
	if (pread(kfd, &eh, sizeof(eh), 0) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return -1;
	segs = calloc(eh.e_phnum, sizeof(*segs));
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(kfd, &ph, sizeof(ph), eh.e_phoff + (uint64_t)i * eh.e_phentsize) != sizeof(ph))
			return -1;
		if (ph.p_type != PT_LOAD)
			continue;
		segs[nsegs].va = ph.p_vaddr;
		segs[nsegs].size = ph.p_filesz;
		segs[nsegs].off = ph.p_offset;
		nsegs++;
	}
	return 0;
}

static int kread(uint64_t va, void *buf, size_t len)
{
	for (int i = 0; i < nsegs; i++) {
		if (va >= segs[i].va && va + len <= segs[i].va + segs[i].size) {
			ssize_t n = pread(kfd, buf, len, segs[i].off + (va - segs[i].va));
			return n == (ssize_t)len ? 0 : -1;
		}
	}
	return -1;
}

/* ------------------------------------------------------------ page walk */

struct split { uint64_t pa; int present, notpresent, ro, x; };

struct stats {
	long g1, m2, k4, k4np, split2m, ro2m, ro4k, readerr;
	struct split *splits;
	long nsplit, capsplit;
	char *gbmap;          /* one char per 2M of the direct map */
	long ngb;
};

static uint64_t pob = 0xffff888000000000ULL; /* page_offset_base */
static int levels = 4;
static int top_shift = 39;

static uint64_t canon(uint64_t va)
{
	int bits = top_shift + 9;
	if (va & (1ULL << (bits - 1)))
		va |= ~((1ULL << bits) - 1);
	return va;
}

/* walk table entries covering [lo, hi); tbl is already read */
static void walk(const uint64_t *tbl, int shift, uint64_t base, uint64_t lo, uint64_t hi,
		 struct stats *st, int direct)
{
	uint64_t size = 1ULL << shift;
	for (int i = 0; i < 512; i++) {
		uint64_t va = canon(base + (uint64_t)i * size);
		if (va + size - 1 < lo || va >= hi)
			continue;
		uint64_t e = tbl[i];
		uint64_t pa = va - pob;
		if (shift == 12) {
			/* handled by the caller (per-region counts) */
			continue;
		}
		if (!(e & PTE_P)) {
			if (shift == 21 && direct && st->gbmap)
				st->gbmap[pa >> 21] = '.';
			continue;
		}
		if (shift == 30 && (e & PTE_PS)) {
			st->g1++;
			if (direct && st->gbmap)
				memset(st->gbmap + (pa >> 21), 'G', 512);
			continue;
		}
		if (shift == 21 && (e & PTE_PS)) {
			st->m2++;
			if (!(e & PTE_RW))
				st->ro2m++;
			if (direct && st->gbmap)
				st->gbmap[pa >> 21] = '2';
			continue;
		}
		uint64_t next[512];
		if (kread(pob + (e & PTE_ADDR), next, sizeof(next)) < 0) {
			st->readerr++;
			continue;
		}
		if (shift == 21) {
			struct split s = { .pa = pa };
			st->split2m++;
			for (int j = 0; j < 512; j++) {
				uint64_t p = next[j];
				if (!(p & PTE_P)) {
					s.notpresent++;
					continue;
				}
				s.present++;
				if (!(p & PTE_RW))
					s.ro++;
				if (!(p & PTE_NX))
					s.x++;
			}
			st->k4 += s.present;
			st->k4np += s.notpresent;
			st->ro4k += s.ro;
			if (direct) {
				if (st->nsplit == st->capsplit) {
					st->capsplit = st->capsplit ? 2 * st->capsplit : 64;
					st->splits = realloc(st->splits, st->capsplit * sizeof(*st->splits));
				}
				st->splits[st->nsplit++] = s;
				if (st->gbmap)
					st->gbmap[pa >> 21] = 's';
			}
			continue;
		}
		walk(next, shift - 9, va, lo, hi, st, direct);
	}
}

static int setup_layout(uint64_t *top_va)
{
	uint64_t a;
	*top_va = kallsym("init_top_pgt");
	if (!*top_va)
		return -1;
	pob = 0xffff888000000000ULL;
	a = kallsym("page_offset_base");
	if (a) {
		uint64_t v;
		if (kread(a, &v, sizeof(v)) == 0 && v)
			pob = v;
	}
	a = kallsym("__pgtable_l5_enabled");
	if (a) {
		unsigned int l5 = 0;
		if (kread(a, &l5, sizeof(l5)) == 0 && l5)
			levels = 5;
	} else if (pob == 0xff11000000000000ULL) {
		levels = 5;
	}
	top_shift = levels == 5 ? 48 : 39;
	return 0;
}

static void json_stats(const char *name, struct stats *s, int full)
{
	out("\"%s\":{\"1G\":%ld,\"2M\":%ld,\"4K\":%ld,\"4Knp\":%ld,\"split2M\":%ld",
	    name, s->g1, s->m2, s->k4, s->k4np, s->split2m);
	if (full)
		out(",\"ro2M\":%ld,\"ro4K\":%ld", s->ro2m, s->ro4k);
	out("}");
}

static void iomem_ram(void)
{
	FILE *f = fopen("/proc/iomem", "r");
	char line[256];
	int first = 1;
	out(",\"iomem_system_ram\":[");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			unsigned long long s, e;
			if (line[0] == ' ' || !strstr(line, "System RAM"))
				continue;
			if (sscanf(line, "%llx-%llx", &s, &e) != 2)
				continue;
			out("%s{\"start\":\"0x%llx\",\"end\":\"0x%llx\",\"kB\":%llu}",
			    first ? "" : ",", s, e, (e + 1 - s) >> 10);
			first = 0;
		}
		fclose(f);
	}
	out("]");
}

static int readout(const char *label)
{
	uint64_t top_va, top[512];
	struct stats dm = {0}, kt = {0};
	uint64_t memend = 0;
	int ok = 1;

	if (kfd < 0 && kcore_open() < 0)
		ok = 0;
	if (ok && setup_layout(&top_va) < 0)
		ok = 0;
	if (ok && kread(top_va, top, sizeof(top)) < 0)
		ok = 0;

	/* direct map: from page_offset_base up to the end of the highest RAM
	 * range in kcore (rounded up to 1G) */
	for (int i = 0; ok && i < nsegs; i++) {
		if (segs[i].va >= pob && segs[i].va < pob + (1ULL << 46)) {
			uint64_t e = segs[i].va + segs[i].size - pob;
			if (e > memend)
				memend = e;
		}
	}
	memend = (memend + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
	dm.ngb = memend >> 30;
	dm.gbmap = malloc(dm.ngb * 512 + 1);
	memset(dm.gbmap, '-', dm.ngb * 512);  /* '-' = no PMD table (PUD empty) */
	if (ok) {
		walk(top, top_shift, 0, pob, pob + memend - 1, &dm, 1);
		walk(top, top_shift, 0, 0xffffffff80000000ULL, 0xffffffffbfffffffULL, &kt, 0);
	}

	out_begin();
	out("@@ORACLE READOUT {\"label\":");
	jstr(label);
	out(",\"uptime\":%.2f", uptime());
	out(",\"split2M\":[");
	for (long i = 0; i < dm.nsplit; i++) {
		struct split *s = &dm.splits[i];
		out("%s{\"pa\":\"0x%llx\",\"present\":%d,\"notpresent\":%d,\"ro\":%d,\"x\":%d}",
		    i ? "," : "", (unsigned long long)s->pa, s->present, s->notpresent, s->ro, s->x);
	}
	out("],\"gbmap\":{");
	int firstgb = 1;
	for (long g = 0; g < dm.ngb; g++) {
		char *m = dm.gbmap + g * 512;
		int empty = 1;
		for (int j = 0; j < 512; j++)
			if (m[j] != '-')
				empty = 0;
		if (empty)
			continue;
		out("%s\"%ld\":\"%.512s\"", firstgb ? "" : ",", g, m);
		firstgb = 0;
	}
	out("}");
	out(",\"DirectMap4k_kB\":%lld", proc_value("/proc/meminfo", "DirectMap4k", 1));
	out(",\"DirectMap2M_kB\":%lld", proc_value("/proc/meminfo", "DirectMap2M", 1));
	long long g1 = proc_value("/proc/meminfo", "DirectMap1G", 1);
	out(",\"DirectMap1G_kB\":%lld", g1 < 0 ? 0 : g1);
	out(",\"direct_map_level2_splits\":%lld", proc_value("/proc/vmstat", "direct_map_level2_splits", 0));
	out(",\"direct_map_level3_splits\":%lld", proc_value("/proc/vmstat", "direct_map_level3_splits", 0));
	out(",\"ptw_levels\":%d,\"page_offset_base\":\"0x%llx\",", levels, (unsigned long long)pob);
	json_stats("ptw_ktext", &kt, 0);
	out(",");
	json_stats("ptw_total", &dm, 1);
	out(",\"ptw_ok\":%s,\"ptw_read_errors\":%ld", ok ? "true" : "false", dm.readerr + kt.readerr);
	if (strcmp(label, "boot") == 0)
		iomem_ram();
	out("}\n");
	out_flush();
	free(dm.splits);
	free(dm.gbmap);
	return ok ? 0 : 1;
}

/* ----------------------------------------------------------------- meta */

static int cpuinfo_has(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[8192];
	int r = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		char *p = strtok(strchr(line, ':') + 1, " \n");
		for (; p; p = strtok(NULL, " \n"))
			if (strcmp(p, flag) == 0)
				r = 1;
		break;
	}
	fclose(f);
	return r;
}

static void read_line(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (f) {
		if (!fgets(buf, n, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

static int meta(void)
{
	char cmdline[1024], rel[256], jit[32];
	read_line("/proc/cmdline", cmdline, sizeof(cmdline));
	read_line("/proc/sys/kernel/osrelease", rel, sizeof(rel));
	read_line("/proc/sys/net/core/bpf_jit_enable", jit, sizeof(jit));
	out_begin();
	out("@@ORACLE META {\"cmdline\":");
	jstr(cmdline);
	out(",\"kernel_release\":");
	jstr(rel);
	out(",\"guest_pdpe1gb\":%s", cpuinfo_has("pdpe1gb") ? "true" : "false");
	out(",\"guest_la57\":%s", cpuinfo_has("la57") ? "true" : "false");
	out(",\"guest_ncpu\":%ld", sysconf(_SC_NPROCESSORS_ONLN));
	out(",\"bpf_jit_enable\":");
	jstr(jit);
	out(",\"ptdump_debugfs\":%s", access("/sys/kernel/debug/page_tables/kernel", F_OK) == 0 ? "true" : "false");
	out(",\"memtotal_kb\":%lld", proc_value("/proc/meminfo", "MemTotal", 1));
	out("}\n");
	out_flush();
	return 0;
}

/* vmalloc areas whose pages get their direct-map alias changed */
static int vmalloc_candidates(void)
{
	static const char *const callers[] = {
		"bpf_prog_pack", "bpf_jit", "bpf_prog_alloc", "module_alloc", "alloc_insn_page",
		"ftrace", "kprobe", "execmem", "load_module", "move_module", NULL,
	};
	FILE *f = fopen("/proc/vmallocinfo", "r");
	char line[1024];
	int first = 1;
	out_begin();
	out("@@ORACLE VMALLOC [");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = 0;
			for (int i = 0; callers[i]; i++)
				if (strstr(line, callers[i])) {
					out("%s", first ? "" : ",");
					jstr(line);
					first = 0;
					break;
				}
		}
		fclose(f);
	}
	out("]\n");
	out_flush();
	return 0;
}

/* ------------------------------------------------------------ workloads */

static int secretmem(long n)
{
	char label[64];
	long pg = sysconf(_SC_PAGESIZE);
	/* secretmem pages count against RLIMIT_MEMLOCK (8 MiB by default): lift it */
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		event("SECRETMEM setrlimit(MEMLOCK) failed errno=%d", errno);
	int fd = syscall(__NR_memfd_secret, 0);
	if (fd < 0) {
		event("SECRETMEM memfd_secret failed errno=%d (%s)", errno, strerror(errno));
		return 1;
	}
	if (ftruncate(fd, n * pg) < 0) {
		event("SECRETMEM ftruncate failed errno=%d", errno);
		return 1;
	}
	volatile char *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		event("SECRETMEM mmap failed errno=%d (%s)", errno, strerror(errno));
		return 1;
	}
	for (long i = 0; i < n; i++)
		p[i * pg] = (char)i;
	event("SECRETMEM ok pages=%ld", n);
	snprintf(label, sizeof(label), "secretmem_%ld_mapped", n);
	readout(label);
	munmap((void *)p, n * pg);
	close(fd);
	snprintf(label, sizeof(label), "secretmem_%ld_freed", n);
	readout(label);
	return 0;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int bpfload(long nprog, long ninsn, const char *label)
{
	char buf[128];
	if (ninsn < 2)
		ninsn = 2;
	struct bpf_insn *insns = calloc(ninsn, sizeof(*insns));
	/* ninsn-1 times "r0 = i" then "exit" */
	for (long i = 0; i < ninsn - 1; i++) {
		insns[i].code = BPF_ALU64 | BPF_MOV | BPF_K;
		insns[i].dst_reg = BPF_REG_0;
		insns[i].imm = (int)(i & 0xffff);
	}
	insns[ninsn - 1].code = BPF_JMP | BPF_EXIT;
	/* one fd per program: lift RLIMIT_NOFILE (1024 by default) */
	struct rlimit rl = { nprog + 64, nprog + 64 };
	if (nprog + 64 > 1024 && setrlimit(RLIMIT_NOFILE, &rl) < 0)
		event("BPF setrlimit(NOFILE) failed errno=%d", errno);
	int *fds = calloc(nprog, sizeof(int));
	long loaded = 0;
	unsigned int jited_first = 0;
	for (long i = 0; i < nprog; i++) {
		union bpf_attr a;
		memset(&a, 0, sizeof(a));
		a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
		a.insns = (uint64_t)(uintptr_t)insns;
		a.insn_cnt = ninsn;
		a.license = (uint64_t)(uintptr_t)"GPL";
		fds[i] = sys_bpf(BPF_PROG_LOAD, &a);
		if (fds[i] < 0) {
			event("BPF load %ld failed errno=%d (%s)", i, errno, strerror(errno));
			break;
		}
		loaded++;
		if (i == 0) {
			struct bpf_prog_info info;
			memset(&info, 0, sizeof(info));
			memset(&a, 0, sizeof(a));
			a.info.bpf_fd = fds[0];
			a.info.info_len = sizeof(info);
			a.info.info = (uint64_t)(uintptr_t)&info;
			if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) == 0)
				jited_first = info.jited_prog_len;
		}
	}
	event("BPF %s progs=%ld insns=%ld jited_len_first=%u",
	      loaded == nprog ? "ok" : "partial", loaded, ninsn, jited_first);
	snprintf(buf, sizeof(buf), "%s_loaded", label);
	readout(buf);
	for (long i = 0; i < loaded; i++)
		close(fds[i]);
	/* programs are freed from an RCU callback / workqueue: give it a moment */
	usleep(200000);
	snprintf(buf, sizeof(buf), "%s_closed", label);
	readout(buf);
	return loaded == nprog ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "readout") == 0)
		return readout(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "meta") == 0)
		return meta();
	if (argc >= 2 && strcmp(argv[1], "vmalloc") == 0)
		return vmalloc_candidates();
	if (argc >= 3 && strcmp(argv[1], "secretmem") == 0)
		return secretmem(atol(argv[2]));
	if (argc >= 5 && strcmp(argv[1], "bpf") == 0)
		return bpfload(atol(argv[2]), atol(argv[3]), argv[4]);
	fprintf(stderr, "usage: oracle readout LABEL | meta | vmalloc | secretmem N | bpf N I LABEL\n");
	return 2;
}
