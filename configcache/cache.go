// Package configcache keeps the rule sets (download_config_specs payloads) the proxy serves, one
// entry per SDK key and format.
//
// This first version serves offline rule-set files named in the configuration; polling Statsig,
// region-wide sharing and format conversion build on the same Entry type.
package configcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/sigedge/sigedge/internal/config"
	"github.com/sigedge/sigedge/internal/wire"
)

// Format is a download_config_specs wire format.
type Format int

// The two formats SDKs ask for.
const (
	// FormatV1 is the legacy format (arrays of specs), served on /v1/download_config_specs.
	FormatV1 Format = 1
	// FormatV2 is the dcs-v2 format (maps + condition_map), served on /v2/download_config_specs.
	FormatV2 Format = 2
)

// ErrUnknownKey is returned for a key the cache cannot serve.
var ErrUnknownKey = errors.New("configcache: unknown SDK key")

// Entry is one rule set as served to SDKs. It is immutable once published.
type Entry struct {
	// Payload is the JSON body served to SDKs.
	Payload []byte
	// Time is the rule set's "time" (lcut), compared with an SDK's sinceTime.
	Time int64
}

// Options configure a Cache.
type Options struct {
	Config config.Config
	Logger *slog.Logger
}

// Cache holds the entries. It is safe for concurrent use.
type Cache struct {
	logger *slog.Logger

	mu      sync.RWMutex
	entries map[string]*Entry
	errs    map[string]error
}

// New loads the offline rule sets of the configuration.
func New(opts Options) (*Cache, error) {
	c := &Cache{logger: opts.Logger, entries: map[string]*Entry{}, errs: map[string]error{}}
	for _, o := range opts.Config.RuleSets.Offline {
		e, err := loadFile(o.File)
		if err != nil {
			c.errs[o.SDKKey] = err
			c.logger.Error("offline rule set not loaded", "key", wire.KeyHash(o.SDKKey), "file", o.File, "err", err)
			continue
		}
		c.entries[o.SDKKey] = e
		c.logger.Info("offline rule set loaded", "key", wire.KeyHash(o.SDKKey), "file", o.File, "time", e.Time)
	}
	return c, nil
}

func loadFile(path string) (*Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var head struct {
		Time int64 `json:"time"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s is not a rule set: %w", path, err)
	}
	return &Entry{Payload: data, Time: head.Time}, nil
}

// Get returns the entry for key in format f.
func (c *Cache) Get(_ context.Context, key string, _ Format) (*Entry, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.entries[key]; ok {
		return e, nil
	}
	return nil, ErrUnknownKey
}

// Ready reports whether every configured rule set is loaded.
func (c *Cache) Ready() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for key, err := range c.errs {
		return fmt.Errorf("offline rule set for key %s: %v", wire.KeyHash(key), err)
	}
	return nil
}

// Close stops background work.
func (c *Cache) Close() {}
