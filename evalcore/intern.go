package evalcore

import (
	"hash/maphash"
	"slices"
	"sync/atomic"
	"unsafe"
)

// internTable hands out the secondary-exposure lists of results. A rule set
// yields few distinct lists (nested gates × their rule ids), so results share
// one read-only copy of each instead of allocating a copy per evaluation:
// CheckGate allocates nothing in the steady state. The table is lock-free and
// bounded: once full (or on a long probe), lists are copied as before, so a
// rule set with very many distinct lists costs memory no worse than before.
type internTable struct {
	salt  uint64
	slots atomic.Pointer[[]atomic.Pointer[internedList]] // allocated on first use
	size  int
	count atomic.Int32
}

type internedList struct {
	h    uint64
	list []SecondaryExposure
}

// internProbe bounds the linear probe: a miss past it copies instead.
const internProbe = 8

func (t *internTable) init(numGates int) {
	t.salt = maphash.Bytes(maphash.MakeSeed(), nil)
	t.size = 1024
	for t.size < 64*numGates && t.size < 1<<16 {
		t.size <<= 1
	}
}

// intern returns a shared copy of list (nil when empty) with cap == len, so a
// caller's append copies rather than writing into the shared array.
func (t *internTable) intern(list []SecondaryExposure) []SecondaryExposure {
	if len(list) == 0 {
		return nil
	}
	slots := t.slots.Load()
	if slots == nil {
		s := make([]atomic.Pointer[internedList], t.size)
		if !t.slots.CompareAndSwap(nil, &s) {
			slots = t.slots.Load()
		} else {
			slots = &s
		}
	}
	h := t.hash(list)
	mask := uint64(len(*slots) - 1)
	for i := uint64(0); i < internProbe; i++ {
		slot := &(*slots)[(h+i)&mask]
		p := slot.Load()
		if p == nil {
			if int(t.count.Load()) >= len(*slots)/2 {
				break
			}
			n := &internedList{h: h, list: slices.Clip(slices.Clone(list))}
			if slot.CompareAndSwap(nil, n) {
				t.count.Add(1)
				return n.list
			}
			p = slot.Load()
		}
		if p.h == h && slices.Equal(p.list, list) {
			return p.list
		}
	}
	return slices.Clip(slices.Clone(list))
}

// hash fingerprints a list by the addresses and lengths of its strings, not
// their bytes: exposure names and rule ids are strings of the RuleSet, so
// equal lists share them. Equal content at other addresses merely hashes
// elsewhere (a separate entry or a copy); lookups still compare contents.
func (t *internTable) hash(list []SecondaryExposure) uint64 {
	h := t.salt ^ uint64(len(list))
	for i := range list {
		x := &list[i]
		h ^= uint64(uintptr(unsafe.Pointer(unsafe.StringData(x.Gate)))) + uint64(len(x.Gate))<<48
		h = (h<<29 | h>>35) * 0x9e3779b97f4a7c15
		h ^= uint64(uintptr(unsafe.Pointer(unsafe.StringData(x.RuleID)))) + uint64(len(x.RuleID))<<48
		if x.GateValue {
			h ^= 1
		}
		h = (h<<31 | h>>33) * 0xc2b2ae3d27d4eb4f
	}
	return h ^ h>>29
}
