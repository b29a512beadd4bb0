/* walk.c — the wrappers' and the CPU signal handler's stack walk: frame
 * rules read from the objects' own .eh_frame, one cache line a frame.
 *
 * libunwind's fast trace (unw_backtrace) was most of what a heap sample
 * cost the program, and little of it was the walk: it builds a 1 KiB
 * cursor and a 1 KiB context on the stack for every trace (callgrind on
 * bench/heap_work's wide loop: 55 of a sample's 100 L1 misses), then looks
 * each frame up in a 256 KiB table per thread. Taking the unwind out of a
 * sample took 1.3 points off that loop (100 interleaved rounds: 0.987
 * of the full build's time).
 * This walk keeps three registers (the instruction, stack and frame
 * pointers) and, per return address, one 16-byte rule in a table shared
 * by all threads: the CFA as the stack or frame pointer plus an offset,
 * the return address at CFA - 8 and where the frame pointer was saved.
 * That is the whole of what x86-64 code from a compiler needs, and what
 * libunwind's own fast trace keeps (its unw_tdep_frame_t).
 *
 * A rule is made from the FDE of the object that holds the address, found
 * with glibc's lock-free, async-signal-safe _dl_find_object and the
 * object's .eh_frame_hdr search table, by running the CIE's and the FDE's
 * call frame instructions up to the address. Anything else is a frame
 * this walk does not take, and the whole trace is then libunwind's: a
 * CFA from an expression or from another register (PLT entries, frames
 * that realign the stack), a return address or frame pointer kept
 * anywhere but in the frame, signal frames, an address no object's table
 * covers (JIT code), a read outside the thread's stack. Such an address
 * is remembered as such, so it costs its lookup once. The walk reads only
 * the thread's own stack, within its known bounds, and the objects'
 * mapped unwind tables; it allocates nothing and takes no lock.
 *
 * The table is insert-only (a rule is claimed by a compare-and-swap of its
 * address, then published), 16384 rules of 16 bytes in the BSS, touched
 * as they are used; when it is full a frame's rule is made and not kept.
 * A dlclose empties it (cprof_walk_flush): another object may be loaded
 * where the closed one was.
 *
 * From a signal handler (cprof_walk_signal, the CPU profile's and the
 * threads profile's captures), the walk starts from the interrupted
 * registers, and the first rule is the interrupted PC's own, not its
 * call's. libunwind's uncached unw_step walk took 29,000 to 52,000 cycles
 * a CPU sample at 1000 Hz on bench/cpu_work, this one 8,600 to 13,000
 * (rdtsc, means of three runs, each new address's first rule included).
 *
 * Only for x86-64 with glibc 2.35 and later (_dl_find_object); elsewhere
 * cprof_walk_here answers -1 and libunwind walks.
 */
#include "cprof_internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <ucontext.h>

#if defined(__x86_64__) && defined(DLFO_EH_SEGMENT_TYPE)

/* DWARF register numbers on x86-64. */
#define DW_RBP 6
#define DW_RSP 7
#define DW_RA 16

/* A rule, packed in a word that is never 0. */
#define RULE_KNOWN (1ULL << 0)   /* set in every rule */
#define RULE_NONE (1ULL << 1)    /* this walk does not take the frame */
#define RULE_CFA_RBP (1ULL << 2) /* CFA = rbp + offset, else rsp + offset */
#define RULE_RBP_SAVED (1ULL << 3) /* rbp's value at CFA + rbp offset */
#define RULE_LAST (1ULL << 4)    /* the return address is undefined: outermost */
#define RULE_TAG_SHIFT 5         /* 11 bits of the address's hash: see rule_for */
#define RULE_TAG_MASK (0x7ffULL << RULE_TAG_SHIFT)
#define RULE_CFA_SHIFT 16        /* int32 offset of the CFA */
#define RULE_RBP_SHIFT 48        /* int16 offset of the saved rbp */

#define WALK_ROOM 2048
#define RULE_SLOTS 16384
#define RULE_PROBES 16

typedef struct rule_slot {
	_Atomic uintptr_t pc;   /* 0: free; claimed before the rule is written */
	_Atomic uint64_t rule;  /* 0: being written */
} rule_slot_t;

static rule_slot_t rules[RULE_SLOTS] __attribute__((aligned(64)));

static inline size_t rule_home(uintptr_t pc)
{
	return (size_t)(((uint64_t)pc * 0x9e3779b97f4a7c15ULL) >> 50); /* 14 bits */
}

/* Bits of the address kept in its rule: a flush (cprof_walk_flush) that
 * races with an insert may leave a rule in a slot that another address
 * claims next, and the reader then finds the tag wrong and makes its own. */
static inline uint64_t rule_tag(uintptr_t pc)
{
	return ((((uint64_t)pc * 0xc2b2ae3d27d4eb4fULL) >> 53) << RULE_TAG_SHIFT) & RULE_TAG_MASK;
}

/* ---- reading .eh_frame ------------------------------------------------- */

typedef struct reader {
	const uint8_t *p, *end;
	bool bad;
} reader_t;

static uint64_t uleb(reader_t *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static int64_t sleb(reader_t *r)
{
	int64_t v = 0;
	unsigned shift = 0;
	while (r->p < r->end && shift < 64) {
		uint8_t b = *r->p++;
		v |= (int64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = true;
	return 0;
}

static uint64_t fixed(reader_t *r, unsigned size)
{
	if ((size_t)(r->end - r->p) < size) {
		r->bad = true;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, r->p, size); /* little-endian */
	r->p += size;
	return v;
}

/* A pointer in DWARF's exception-handling encoding `enc`: absolute, or
 * relative to where it is read (pcrel) or to `data` (datarel). */
static uintptr_t encoded(reader_t *r, uint8_t enc, uintptr_t data)
{
	if (enc == 0xff) /* DW_EH_PE_omit */
		return 0;
	uintptr_t at = (uintptr_t)r->p;
	uint64_t v;
	switch (enc & 0x0f) {
	case 0x00: v = fixed(r, 8); break;                      /* absptr */
	case 0x01: v = uleb(r); break;                          /* uleb128 */
	case 0x02: v = fixed(r, 2); break;                      /* udata2 */
	case 0x03: v = fixed(r, 4); break;                      /* udata4 */
	case 0x04: v = fixed(r, 8); break;                      /* udata8 */
	case 0x09: v = (uint64_t)sleb(r); break;                /* sleb128 */
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break; /* sdata2 */
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break; /* sdata4 */
	case 0x0c: v = fixed(r, 8); break;                      /* sdata8 */
	default: r->bad = true; return 0;
	}
	switch (enc & 0x70) {
	case 0x00: break;             /* absolute */
	case 0x10: v += at; break;    /* pcrel */
	case 0x30: v += data; break;  /* datarel */
	default: r->bad = true; return 0;
	}
	if (enc & 0x80) /* indirect: not in an FDE's range or the search table */
		r->bad = true;
	return (uintptr_t)v;
}

/* A register the walk can take a CFA from (rsp, rbp), or -1. */
static inline int cfa_base(uint64_t reg)
{
	return reg == DW_RSP || reg == DW_RBP ? (int)reg : -1;
}

/* What the CFA and the two registers the walk follows are at a point. */
typedef struct frame_state {
	int cfa_reg;       /* DW_RSP, DW_RBP, or -1: not one the walk takes */
	int64_t cfa_off;
	int rbp;           /* 0 unchanged, 1 saved at CFA + rbp_off, -1 other */
	int64_t rbp_off;
	int ra;            /* 1 at CFA + ra_off, 0 undefined, -1 other */
	int64_t ra_off;
} frame_state_t;

#define STATE_STACK 8 /* DW_CFA_remember_state nesting */

typedef struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	bool z;            /* augmentation data in the CIE and its FDEs */
	bool signal_frame;
	const uint8_t *insns, *insns_end;
} cie_t;

static bool parse_cie(const uint8_t *at, const uint8_t *limit, cie_t *cie)
{
	reader_t r = { at, limit, false };
	uint64_t length = fixed(&r, 4);
	if (r.bad || length == 0 || length == 0xffffffff || length > (uint64_t)(limit - r.p))
		return false;
	r.end = r.p + length;
	if (fixed(&r, 4) != 0) /* a CIE's id */
		return false;
	uint8_t version = (uint8_t)fixed(&r, 1);
	if (version != 1 && version != 3)
		return false;
	const char *aug = (const char *)r.p;
	size_t aug_len = strnlen(aug, (size_t)(r.end - r.p));
	if (aug_len == (size_t)(r.end - r.p))
		return false;
	r.p += aug_len + 1;
	cie->code_align = uleb(&r);
	cie->data_align = sleb(&r);
	uint64_t ra_reg = version == 1 ? fixed(&r, 1) : uleb(&r);
	if (ra_reg != DW_RA)
		return false;
	cie->fde_enc = 0; /* absptr */
	cie->signal_frame = false;
	cie->z = aug[0] == 'z';
	if (cie->z) {
		uint64_t data_len = uleb(&r);
		if (r.bad || data_len > (uint64_t)(r.end - r.p))
			return false;
		const uint8_t *data_end = r.p + data_len;
		for (size_t i = 1; i < aug_len; i++) {
			switch (aug[i]) {
			case 'R': cie->fde_enc = (uint8_t)fixed(&r, 1); break;
			case 'L': (void)fixed(&r, 1); break;
			case 'P': {
				uint8_t enc = (uint8_t)fixed(&r, 1);
				/* Only its size matters; an indirect pointer is one. */
				(void)encoded(&r, enc & 0x7f, 0);
				break;
			}
			case 'S': cie->signal_frame = true; break;
			default: return false; /* 'B' and others: not x86-64 compilers' */
			}
		}
		if (r.bad || r.p > data_end)
			return false;
		r.p = data_end;
	} else if (aug_len != 0) {
		return false; /* "eh" and the like */
	}
	if (r.bad)
		return false;
	cie->insns = r.p;
	cie->insns_end = r.end;
	return true;
}

/* Runs call frame instructions from `loc` while the row they describe
 * starts at or before `target`. false: an instruction this walk does not
 * know, or a malformed table. */
static bool run_cfa(const uint8_t *p, const uint8_t *end, const cie_t *cie, uint8_t fde_enc,
		    uintptr_t loc, uintptr_t target, frame_state_t *st, const frame_state_t *initial)
{
	frame_state_t saved[STATE_STACK];
	int depth = 0;
	reader_t r = { p, end, false };
	while (r.p < r.end && !r.bad) {
		uint8_t op = *r.p++;
		uint64_t reg = 0;
		int64_t off = 0;
		uint64_t delta;
		switch (op & 0xc0) {
		case 0x40: /* advance_loc */
			delta = (op & 0x3f) * cie->code_align;
			goto advance;
		case 0x80: /* offset */
			reg = op & 0x3f;
			off = (int64_t)uleb(&r) * cie->data_align;
			goto set_offset;
		case 0xc0: /* restore */
			reg = op & 0x3f;
			goto restore;
		}
		switch (op) {
		case 0x00: /* nop */
			continue;
		case 0x01: { /* set_loc */
			uintptr_t to = encoded(&r, fde_enc, 0);
			if (to > target)
				return !r.bad;
			loc = to;
			continue;
		}
		case 0x02: delta = fixed(&r, 1) * cie->code_align; goto advance;
		case 0x03: delta = fixed(&r, 2) * cie->code_align; goto advance;
		case 0x04: delta = fixed(&r, 4) * cie->code_align; goto advance;
		case 0x05: /* offset_extended */
			reg = uleb(&r);
			off = (int64_t)uleb(&r) * cie->data_align;
			goto set_offset;
		case 0x06: /* restore_extended */
			reg = uleb(&r);
			goto restore;
		case 0x07: /* undefined */
		case 0x08: /* same_value */
			reg = uleb(&r);
			if (reg == DW_RBP)
				st->rbp = op == 0x08 ? 0 : -1;
			else if (reg == DW_RA)
				st->ra = op == 0x07 ? 0 : -1;
			else if (reg == DW_RSP)
				return false;
			continue;
		case 0x09: /* register */
			reg = uleb(&r);
			(void)uleb(&r);
			goto other;
		case 0x0a: /* remember_state */
			if (depth == STATE_STACK)
				return false;
			saved[depth++] = *st;
			continue;
		case 0x0b: /* restore_state: the whole row, CFA too (libgcc's reading) */
			if (depth == 0)
				return false;
			*st = saved[--depth];
			continue;
		case 0x0c: /* def_cfa */
			reg = uleb(&r);
			st->cfa_off = (int64_t)uleb(&r);
			st->cfa_reg = cfa_base(reg);
			continue;
		case 0x0d: /* def_cfa_register */
			reg = uleb(&r);
			st->cfa_reg = cfa_base(reg);
			continue;
		case 0x0e: /* def_cfa_offset */
			st->cfa_off = (int64_t)uleb(&r);
			continue;
		case 0x0f: { /* def_cfa_expression */
			uint64_t len = uleb(&r);
			if (len > (uint64_t)(r.end - r.p))
				return false;
			r.p += len;
			st->cfa_reg = -1;
			continue;
		}
		case 0x10:   /* expression */
		case 0x16: { /* val_expression */
			reg = uleb(&r);
			uint64_t len = uleb(&r);
			if (len > (uint64_t)(r.end - r.p))
				return false;
			r.p += len;
			goto other;
		}
		case 0x11: /* offset_extended_sf */
			reg = uleb(&r);
			off = sleb(&r) * cie->data_align;
			goto set_offset;
		case 0x12: /* def_cfa_sf */
			reg = uleb(&r);
			st->cfa_off = sleb(&r) * cie->data_align;
			st->cfa_reg = cfa_base(reg);
			continue;
		case 0x13: /* def_cfa_offset_sf */
			st->cfa_off = sleb(&r) * cie->data_align;
			continue;
		case 0x14: /* val_offset */
			reg = uleb(&r);
			(void)uleb(&r);
			goto other;
		case 0x15: /* val_offset_sf */
			reg = uleb(&r);
			(void)sleb(&r);
			goto other;
		case 0x2e: /* GNU_args_size: the CFA does not depend on it */
			(void)uleb(&r);
			continue;
		case 0x2f: /* GNU_negative_offset_extended */
			reg = uleb(&r);
			off = -(int64_t)uleb(&r) * cie->data_align;
			goto set_offset;
		default:
			return false;
		}
	advance:
		if (loc + delta > target)
			return !r.bad;
		loc += delta;
		continue;
	set_offset:
		if (reg == DW_RBP) {
			st->rbp = 1;
			st->rbp_off = off;
		} else if (reg == DW_RA) {
			st->ra = 1;
			st->ra_off = off;
		} else if (reg == DW_RSP) {
			return false;
		}
		continue;
	restore:
		if (!initial)
			return false; /* restore inside a CIE */
		if (reg == DW_RBP) {
			st->rbp = initial->rbp;
			st->rbp_off = initial->rbp_off;
		} else if (reg == DW_RA) {
			st->ra = initial->ra;
			st->ra_off = initial->ra_off;
		}
		continue;
	other:
		if (reg == DW_RBP)
			st->rbp = -1;
		else if (reg == DW_RA)
			st->ra = -1;
		else if (reg == DW_RSP)
			return false;
		continue;
	}
	return !r.bad;
}

/* The rule for `pc` (an address inside a call instruction), made from the
 * object's tables; RULE_KNOWN | RULE_NONE when the walk cannot take it. */
static uint64_t make_rule(uintptr_t pc)
{
	const uint64_t none = RULE_KNOWN | RULE_NONE;
	struct dl_find_object found;
	if (_dl_find_object((void *)pc, &found) != 0 || !found.dlfo_eh_frame)
		return none;
	/* .eh_frame_hdr: version 1, three encodings, then the pointer to
	 * .eh_frame, the count and the sorted table of (start, FDE) pairs,
	 * 4-byte offsets from the header as every linker writes it. */
	/* Every read stays inside the object's mapping, whatever its
	 * tables say. */
	const uint8_t *map_start = found.dlfo_map_start, *map_end = found.dlfo_map_end;
	const uint8_t *hdr = found.dlfo_eh_frame;
	if (hdr < map_start || map_end - hdr < 20 || hdr[0] != 1 || hdr[3] != 0x3b)
		return none;
	reader_t r = { hdr + 4, hdr + 20, false };
	(void)encoded(&r, hdr[1], (uintptr_t)hdr);
	uint64_t count = encoded(&r, hdr[2], (uintptr_t)hdr);
	if (r.bad || count == 0 || count > (uint64_t)(map_end - r.p) / 8)
		return none;
	const int32_t *table = (const int32_t *)r.p;
	uintptr_t base = (uintptr_t)hdr;
	size_t lo = 0, hi = count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (base + (intptr_t)table[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if (base + (intptr_t)table[2 * lo] > pc)
		return none;
	const uint8_t *fde = (const uint8_t *)(base + (intptr_t)table[2 * lo + 1]);
	/* An FDE: length, the offset back to its CIE, start, range, the
	 * augmentation data, instructions. */
	if (fde < map_start || map_end - fde < 8)
		return none;
	reader_t f = { fde, fde + 8, false };
	uint64_t length = fixed(&f, 4);
	if (length == 0 || length == 0xffffffff || length > (uint64_t)(map_end - fde) - 4)
		return none;
	f.end = fde + 4 + length;
	const uint8_t *id_at = f.p;
	uint64_t cie_off = fixed(&f, 4);
	if (f.bad || cie_off == 0 || cie_off > (uint64_t)(id_at - map_start))
		return none;
	cie_t cie;
	const uint8_t *cie_at = id_at - cie_off;
	if (!parse_cie(cie_at, map_end, &cie) || cie.signal_frame)
		return none;
	uintptr_t start = encoded(&f, cie.fde_enc, 0);
	uintptr_t range = encoded(&f, cie.fde_enc & 0x0f, 0);
	if (f.bad || pc < start || pc - start >= range)
		return none;
	frame_state_t st = { -1, 0, 0, 0, -1, 0 }, initial;
	if (!run_cfa(cie.insns, cie.insns_end, &cie, cie.fde_enc, start, (uintptr_t)-1, &st, NULL))
		return none;
	initial = st;
	/* A CIE of a 'z' augmentation has FDEs that carry a data length. */
	if (cie.z) {
		uint64_t skip = uleb(&f);
		if (f.bad || skip > (uint64_t)(f.end - f.p))
			return none;
		f.p += skip;
	}
	if (!run_cfa(f.p, f.end, &cie, cie.fde_enc, start, pc, &st, &initial))
		return none;
	if (st.cfa_reg < 0 || st.cfa_off < 8 || st.cfa_off > INT32_MAX || st.rbp < 0 || st.ra < 0)
		return none;
	if (st.ra == 0)
		return RULE_KNOWN | RULE_LAST;
	if (st.ra_off != -8)
		return none;
	uint64_t rule = RULE_KNOWN | ((uint64_t)(uint32_t)(int32_t)st.cfa_off << RULE_CFA_SHIFT);
	if (st.cfa_reg == DW_RBP)
		rule |= RULE_CFA_RBP;
	if (st.rbp == 1) {
		if (st.rbp_off < INT16_MIN || st.rbp_off > INT16_MAX || st.rbp_off == -8)
			return none;
		rule |= RULE_RBP_SAVED | ((uint64_t)(uint16_t)(int16_t)st.rbp_off << RULE_RBP_SHIFT);
	}
	return rule;
}

/* The rule for pc, from the table or made and kept there. */
static inline uint64_t rule_for(uintptr_t pc)
{
	size_t i = rule_home(pc);
	for (int probe = 0; probe < RULE_PROBES; probe++, i = (i + 1) & (RULE_SLOTS - 1)) {
		uintptr_t at = atomic_load_explicit(&rules[i].pc, memory_order_acquire);
		if (at == pc) {
			uint64_t rule = atomic_load_explicit(&rules[i].rule, memory_order_acquire);
			if ((rule & RULE_TAG_MASK) == rule_tag(pc) && rule)
				return rule;
			return make_rule(pc) | rule_tag(pc); /* being written */
		}
		if (at == 0) {
			uint64_t rule = make_rule(pc) | rule_tag(pc);
			uintptr_t expected = 0;
			if (atomic_compare_exchange_strong_explicit(&rules[i].pc, &expected, pc,
								    memory_order_acq_rel,
								    memory_order_relaxed))
				atomic_store_explicit(&rules[i].rule, rule, memory_order_release);
			return rule;
		}
	}
	return make_rule(pc) | rule_tag(pc);
}

/* The rules of the thread's last walk, frame by frame: a rule depends
 * only on its address, and a thread's walks mostly retrace the last one,
 * so a frame whose address is the one at its depth last time takes its
 * rule from here, a line the thread already had, where the shared table
 * is a cache miss for each frame, one after the other (rdtsc around a
 * heap sample's unwind on bench/heap_work's wide loop: 550 to 870 cycles
 * with the table alone and libunwind's cancellation hold-off still
 * around the walk; 395 to 474 with neither the hold-off nor, for most
 * frames, the table). A flush makes every thread's memo stale
 * (the generation). A walk that a signal handler starts while its thread
 * is in one neither reads nor writes the memo. */
#define MEMO_FRAMES 16

typedef struct walk_memo {
	int walking;
	unsigned generation;
	struct {
		uintptr_t ip;
		uint64_t rule;
	} frames[MEMO_FRAMES];
} walk_memo_t;

static __thread walk_memo_t walk_tls __attribute__((tls_model("initial-exec")));
static _Atomic unsigned walk_generation = 1;

/* The walk from a frame's instruction, stack and frame pointers: return
 * addresses, or with `exact` an interrupted PC first; -1 when a frame is
 * not this walk's. `memo_ok`: the thread's memo may serve (the wrappers'
 * walks; a CPU signal's stacks would only thrash it). *complete: the
 * outermost frame was reached (else the walk stopped at max). */
CPROF_SIGSAFE static int walk(uintptr_t *pcs, int max, uintptr_t ip, uintptr_t sp, uintptr_t bp,
			      bool exact, bool memo_ok, bool *complete)
{
	uintptr_t lo, hi;
	cprof_unwind_stack_bounds(&lo, &hi);
	*complete = false;
	/* Room for a rule's making (about 1 KiB), as the other walks check
	 * theirs; a signal stack is not the thread's and fails this too. */
	if (lo >= hi || sp < lo + WALK_ROOM || sp >= hi)
		return -1;
	walk_memo_t *memo = &walk_tls;
	bool own = memo_ok && !memo->walking;
	if (own) {
		memo->walking = 1;
		atomic_signal_fence(memory_order_seq_cst);
		unsigned generation = atomic_load_explicit(&walk_generation, memory_order_acquire);
		if (memo->generation != generation) {
			memset(memo->frames, 0, sizeof memo->frames);
			memo->generation = generation;
		}
	}
	int n = 0;
	while (n < max) {
		pcs[n] = ip;
		uint64_t rule;
		if (own && n < MEMO_FRAMES && memo->frames[n].ip == ip) {
			rule = memo->frames[n].rule;
		} else {
			/* A return address is looked up in its call. */
			rule = rule_for(exact && n == 0 ? ip : ip - 1);
			if (own && n < MEMO_FRAMES) {
				memo->frames[n].ip = ip;
				memo->frames[n].rule = rule;
			}
		}
		n++;
		if (rule & RULE_NONE)
			goto fail;
		if (rule & RULE_LAST) {
			*complete = true;
			break;
		}
		uintptr_t cfa = ((rule & RULE_CFA_RBP) ? bp : sp) +
				(uintptr_t)(int64_t)(int32_t)(uint32_t)(rule >> RULE_CFA_SHIFT);
		if (cfa <= sp || cfa > hi || cfa - 8 < lo)
			goto fail;
		uintptr_t ra = *(const uintptr_t *)(cfa - 8);
		if (rule & RULE_RBP_SAVED) {
			uintptr_t at = cfa + (uintptr_t)(int64_t)(int16_t)(uint16_t)(rule >> RULE_RBP_SHIFT);
			if (at < sp || at + 8 > hi)
				goto fail;
			bp = *(const uintptr_t *)at;
		}
		sp = cfa;
		if (ra == 0)
			goto fail;
		ip = ra;
	}
	if (own) {
		atomic_signal_fence(memory_order_seq_cst);
		memo->walking = 0;
	}
	return n;
fail:
	if (own) {
		atomic_signal_fence(memory_order_seq_cst);
		memo->walking = 0;
	}
	return -1;
}

/* The state the caller of cprof_walk_here had just after the call: its
 * return address, stack pointer and frame pointer. */
CPROF_SIGSAFE int cprof_walk_from(uintptr_t *pcs, int max, uintptr_t ip, uintptr_t sp,
				  uintptr_t bp)
{
	bool complete;
	return walk(pcs, max, ip, sp, bp, false, true, &complete);
}

CPROF_SIGSAFE int cprof_walk_signal(const void *ucontext, uintptr_t *pcs, int max,
				    bool *complete)
{
	const ucontext_t *uc = ucontext;
	const greg_t *g = uc->uc_mcontext.gregs;
	return walk(pcs, max, (uintptr_t)g[REG_RIP], (uintptr_t)g[REG_RSP], (uintptr_t)g[REG_RBP],
		    true, false, complete);
}

/* The caller's return address, stack pointer (as it is once this call
 * returns) and frame pointer, to cprof_walk_from; this function touches
 * neither the stack nor rbp. */
__asm__(".text\n"
	".globl cprof_walk_here\n"
	".hidden cprof_walk_here\n"
	".type cprof_walk_here, @function\n"
	"cprof_walk_here:\n"
	"	.cfi_startproc\n"
	"	movq (%rsp), %rdx\n"
	"	leaq 8(%rsp), %rcx\n"
	"	movq %rbp, %r8\n"
	"	jmp cprof_walk_from\n"
	"	.cfi_endproc\n"
	".size cprof_walk_here, .-cprof_walk_here\n");

#ifdef CPROF_WALK_CHECK
/* The test build's check (tests/e2e/walk.sh): every walk, a wrapper's
 * (kind 0) or a signal handler's (1), against libunwind's of the same
 * stack, both as they would be recorded; counted, and the first
 * differences kept, all printed on stderr at exit. Nothing here prints,
 * allocates or locks while it checks: it runs in signal handlers. Not in
 * the shim users run. */
#include <stdio.h>
#include <stdlib.h>

#define CHECK_SHOWN 4

static _Atomic long check_same[2], check_different[2], check_left[2];
static struct {
	int kind, depth, m;
	uintptr_t mine[64], lib[64];
} check_shown[CHECK_SHOWN];

/* An address as object+offset (symbol+offset where dladdr knows one). */
static void check_print(uintptr_t pc)
{
	Dl_info info;
	if (pc > 16 && dladdr((void *)pc, &info) && info.dli_fname) {
		const char *base = strrchr(info.dli_fname, '/');
		fprintf(stderr, " %s+%#lx", base ? base + 1 : info.dli_fname,
			(unsigned long)(pc - (uintptr_t)info.dli_fbase));
		if (info.dli_sname)
			fprintf(stderr, "(%s+%#lx)", info.dli_sname,
				(unsigned long)(pc - (uintptr_t)info.dli_saddr));
	} else {
		fprintf(stderr, " %#lx", (unsigned long)pc);
	}
}

static void check_report(void)
{
	long shown = check_different[0] + check_different[1];
	for (long i = 0; i < shown && i < CHECK_SHOWN; i++) {
		fprintf(stderr, "cprof-walk-check: %s walk", check_shown[i].kind ? "signal" : "wrapper");
		for (int k = 0; k < check_shown[i].depth && k < 64; k++)
			check_print(check_shown[i].mine[k]);
		fprintf(stderr, "\ncprof-walk-check: libunwind");
		for (int k = 0; k < check_shown[i].m && k < 64; k++)
			check_print(check_shown[i].lib[k]);
		fprintf(stderr, "\n");
	}
	for (int kind = 0; kind < 2; kind++)
		fprintf(stderr, "cprof-walk-check: %s same %ld different %ld left-to-libunwind %ld\n",
			kind ? "signal" : "wrapper", (long)check_same[kind],
			(long)check_different[kind], (long)check_left[kind]);
}

__attribute__((constructor)) static void check_start(void)
{
	atexit(check_report);
}

void cprof_walk_check(int kind, const uintptr_t *mine, int depth, const uintptr_t *lib, int m)
{
	if (depth < 0) {
		check_left[kind]++;
		return;
	}
	/* A stack deeper than max: the two may spend max differently on
	 * libcprof's own frames, so compare up to the shallower one's
	 * truncation mark. */
	bool truncated = (depth > 0 && mine[depth - 1] == CPROF_FRAME_TRUNCATED) ||
			 (m > 0 && lib[m - 1] == CPROF_FRAME_TRUNCATED);
	int common = truncated ? (depth < m ? depth : m) - 1 : depth;
	if ((truncated || depth == m) && common >= 0 &&
	    memcmp(mine, lib, (size_t)common * sizeof *lib) == 0) {
		check_same[kind]++;
		return;
	}
	long i = atomic_fetch_add(&check_different[kind], 1) +
		 atomic_load(&check_different[1 - kind]);
	if (i < CHECK_SHOWN) {
		check_shown[i].kind = kind;
		check_shown[i].depth = depth;
		check_shown[i].m = m;
		memcpy(check_shown[i].mine, mine, (size_t)(depth < 64 ? depth : 64) * sizeof *mine);
		memcpy(check_shown[i].lib, lib, (size_t)(m < 64 ? m : 64) * sizeof *lib);
	}
}
#endif

void cprof_walk_flush(void)
{
	atomic_fetch_add_explicit(&walk_generation, 1, memory_order_acq_rel);
	for (size_t i = 0; i < RULE_SLOTS; i++) {
		if (atomic_load_explicit(&rules[i].pc, memory_order_relaxed) == 0)
			continue;
		atomic_store_explicit(&rules[i].rule, 0, memory_order_relaxed);
		atomic_store_explicit(&rules[i].pc, 0, memory_order_release);
	}
}

#else

CPROF_SIGSAFE int cprof_walk_here(uintptr_t *pcs, int max)
{
	(void)pcs, (void)max;
	return -1;
}

CPROF_SIGSAFE int cprof_walk_signal(const void *ucontext, uintptr_t *pcs, int max,
				    bool *complete)
{
	(void)ucontext, (void)pcs, (void)max;
	*complete = false;
	return -1;
}

void cprof_walk_flush(void)
{
}

#endif
