package configcache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sigedge/sigedge/evalcore"
)

// EvalCompile is the default Compiler: evalcore.Compile.
func EvalCompile(payload []byte) (Model, error) {
	rs, err := evalcore.Compile(payload, evalcore.CompileOptions{})
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return rs, nil
}

// EvalConvert is the default Converter: evalcore.ConvertToV1 / ConvertToV2. The v1 output has no
// hashed_sdk_key_used; the cache does not add one (legacy SDKs accept its absence).
func EvalConvert(payload []byte, to Format) ([]byte, error) {
	if to == FormatV1 {
		return evalcore.ConvertToV1(payload, evalcore.V1Options{})
	}
	return evalcore.ConvertToV2(payload)
}

// keyIDLists lets an evaluator see a key's ID lists as they are refreshed, without being rebuilt.
type keyIDLists struct{ ks *keyState }

func (k keyIDLists) Contains(list, id string) bool { return k.ks.ids.set.Load().Contains(list, id) }

// evaluators caches the evaluator of each key's current entry (building one allocates tables).
type evaluators struct {
	mu sync.Mutex
	m  map[string]cachedEvaluator // by SDK key
}

type cachedEvaluator struct {
	e  *Entry
	ev *evalcore.Evaluator
}

// Evaluator returns an evaluator of key's current rule set (see RuleSet), which also sees the
// key's ID lists: the first call starts ID-list syncing for the key. The environment tier comes
// from rulesets.environments; Options.EvaluatorOptions supplies the rest (countries, clock, …).
// Errors are Get's.
func (c *Cache) Evaluator(ctx context.Context, key string) (*evalcore.Evaluator, error) {
	e, ks, err := c.modelEntry(ctx, key)
	if err != nil {
		return nil, err
	}
	if ks != nil && ks.ids.set.Load() == nil {
		// ID lists are fetched once here; a failure leaves them empty (and is logged), it does not
		// fail the evaluation.
		_, _ = c.IDLists(ctx, key)
	}
	c.evals.mu.Lock()
	defer c.evals.mu.Unlock()
	if ce, ok := c.evals.m[key]; ok && ce.e == e {
		return ce.ev, nil
	}
	rs, ok := e.Model.(*evalcore.RuleSet)
	if !ok {
		return nil, fmt.Errorf("%w: rule sets are not compiled by evalcore", ErrUnavailable)
	}
	opts := c.evalOpts
	if env := c.cfg.RuleSets.Environments[key]; env != "" {
		opts.Environment = map[string]string{"tier": env}
	}
	if ks != nil {
		opts.IDLists = keyIDLists{ks}
	}
	ev := evalcore.NewEvaluator(rs, opts)
	c.evals.m[key] = cachedEvaluator{e: e, ev: ev}
	return ev, nil
}

// modelEntry is RuleSet's lookup, returning the entry and (for online keys) the key's state.
func (c *Cache) dropEvaluator(key string) {
	c.evals.mu.Lock()
	delete(c.evals.m, key)
	c.evals.mu.Unlock()
}

func (c *Cache) modelEntry(ctx context.Context, key string) (*Entry, *keyState, error) {
	if o := c.offline[key]; o != nil {
		for _, f := range []Format{FormatV2, FormatV1} {
			if e := o.entries[f].Load(); e != nil {
				return e, nil, nil
			}
		}
		return nil, nil, c.offlineErr(o)
	}
	if err := c.allow(key); err != nil {
		return nil, nil, err
	}
	if ks, ok := c.lookup(key); ok {
		for _, f := range []Format{FormatV2, FormatV1} {
			if e := ks.slot(f).entry.Load(); e != nil {
				return e, ks, nil
			}
		}
	}
	e, err := c.Get(ctx, key, FormatV2) // checks the negative cache before fetching
	if err != nil {
		return nil, nil, err
	}
	ks, _ := c.lookup(key)
	return e, ks, nil
}

// IsKeyError reports whether err means the key itself cannot be served (unknown, not allowed, or
// refused by Statsig), as opposed to a rule set being temporarily unavailable.
func IsKeyError(err error) bool {
	return errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrInvalidKey)
}
