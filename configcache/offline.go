package configcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// offlineKey is a rule set served from a file (rulesets.offline).
type offlineKey struct {
	key, hash, file string
	entries         [3]atomic.Pointer[Entry] // by Format
	loaded          atomic.Bool              // a load succeeded at least once
	lastErr         atomic.Pointer[string]   // the last load error, nil after a success

	// Owned by the loader (New, then the watcher goroutine).
	size     int64
	modTime  time.Time
	sum      [sha256.Size]byte
	lastTime int64
	errText  string
}

func (c *Cache) getOffline(o *offlineKey, f Format) (*Entry, error) {
	if e := o.entries[f].Load(); e != nil {
		c.m.lookups.WithLabelValues(f.String(), "offline").Inc()
		return e, nil
	}
	c.m.lookups.WithLabelValues(f.String(), "unavailable").Inc()
	if o.loaded.Load() {
		return nil, fmt.Errorf("%w: the offline rule set of this key could not be converted to %s", ErrFormatUnavailable, f)
	}
	return nil, c.offlineErr(o)
}

func (c *Cache) offlineErr(o *offlineKey) error {
	if p := o.lastErr.Load(); p != nil {
		return fmt.Errorf("%w: offline rule set not loaded: %s", ErrUnavailable, *p)
	}
	return fmt.Errorf("%w: offline rule set not loaded", ErrUnavailable)
}

// watchOffline reloads offline files whose size or modification time changed. Polling the file's
// stat is portable (bind-mounted ConfigMaps, network file systems) and costs one stat per second.
func (c *Cache) watchOffline() {
	defer c.wg.Done()
	t := time.NewTicker(c.offlineEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		for _, o := range c.offline {
			st, err := os.Stat(o.file)
			if err == nil && o.loaded.Load() && st.Size() == o.size && st.ModTime().Equal(o.modTime) {
				continue
			}
			c.loadOffline(o)
		}
	}
}

// loadOffline (re)loads o's file. On failure the entries already served stay.
func (c *Cache) loadOffline(o *offlineKey) {
	log := c.logger.With("key", o.hash, "file", o.file)
	err := c.readOffline(o)
	if err != nil {
		c.m.offlineReloads.WithLabelValues("error").Inc()
		msg := err.Error()
		o.lastErr.Store(&msg)
		if msg != o.errText { // once per distinct problem, not once per second
			o.errText = msg
			if o.loaded.Load() {
				log.Error("offline rule set file changed but cannot be loaded; still serving the previous version", "err", err)
			} else {
				log.Error("offline rule set file cannot be loaded; the proxy is not ready", "err", err)
			}
		}
		return
	}
	o.errText = ""
	o.lastErr.Store(nil)
	c.m.offlineReloads.WithLabelValues("ok").Inc()
	var served []string
	for _, f := range formats {
		if o.entries[f].Load() != nil {
			served = append(served, f.String())
		}
	}
	log.Info("offline rule set loaded", "time", o.lastTime, "bytes", o.size, "formats", served)
}

func (c *Cache) readOffline(o *offlineKey) error {
	st, err := os.Stat(o.file)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(o.file)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if o.loaded.Load() && sum == o.sum {
		o.size, o.modTime = st.Size(), st.ModTime() // touched, not changed
		return nil
	}
	h, err := parseHead(data)
	if errors.Is(err, errNoUpdates) {
		return errors.New("the file holds {\"has_updates\":false}, not a rule set")
	}
	if err != nil {
		return err
	}
	if o.loaded.Load() && h.time <= o.lastTime {
		// SDKs poll with sinceTime = the time they hold: an edited file with the same time would
		// never reach them. Serve it as one millisecond newer.
		bumped := o.lastTime + 1
		c.logger.Warn("offline rule set changed but its time did not increase; serving it with a newer time so SDKs pick it up",
			"key", o.hash, "file", o.file, "file_time", h.time, "served_time", bumped)
		if data, err = setTopLevel(data, map[string]any{"time": bumped}); err != nil {
			return err
		}
		h.time = bumped
	}
	m, err := c.compile(data)
	if err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	native := h.format
	var next [3]*Entry
	payload := data
	if native == FormatV1 {
		if payload, err = fixHashedKey(payload, o.key); err != nil {
			return err
		}
	}
	if next[native], err = newEntry(payload, native, h, m, SourceOffline); err != nil {
		return err
	}
	if c.convert != nil {
		other := native.other()
		conv, err := c.convert(data, other)
		if err == nil {
			conv, err = c.finishConverted(conv, other, h, o.key)
		}
		if err == nil {
			oh := h
			oh.format = other
			next[other], err = newEntry(conv, other, oh, m, SourceOffline)
		}
		if err != nil {
			// The native format still serves; SDKs of the other kind get a clear 404.
			c.logger.Error("offline rule set cannot be converted; it is served in its own format only",
				"key", o.hash, "file", o.file, "from", native.String(), "to", other.String(), "err", err)
		}
	}
	for _, f := range formats {
		o.entries[f].Store(next[f])
	}
	o.size, o.modTime, o.sum, o.lastTime = st.Size(), st.ModTime(), sum, h.time
	o.loaded.Store(true)
	return nil
}

// finishConverted checks a converted payload and gives it the source's time (the converter may
// not carry it) and, for v1, this key's hash.
func (c *Cache) finishConverted(conv []byte, to Format, src parsedHead, key string) ([]byte, error) {
	h, err := parseHead(conv)
	if err != nil {
		return nil, fmt.Errorf("converted payload: %w", err)
	}
	if h.format != to {
		return nil, fmt.Errorf("converter returned format %s, expected %s", h.format, to)
	}
	if h.time != src.time {
		if conv, err = setTopLevel(conv, map[string]any{"time": src.time}); err != nil {
			return nil, err
		}
	}
	if to == FormatV1 {
		return fixHashedKey(conv, key)
	}
	return conv, nil
}

// fixHashedKey makes a v1 payload's hashed_sdk_key_used match key: legacy SDKs reject a payload
// whose hash names another key, and an offline file is often exported for another key.
func fixHashedKey(payload []byte, key string) ([]byte, error) {
	var top struct {
		Hashed *string `json:"hashed_sdk_key_used"`
	}
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, err
	}
	want := djb2(key)
	if top.Hashed == nil || *top.Hashed == want {
		return payload, nil
	}
	return setTopLevel(payload, map[string]any{"hashed_sdk_key_used": want})
}

// djb2 is the key hash legacy SDKs compare hashed_sdk_key_used with (decimal uint32).
func djb2(s string) string {
	var h uint32
	for i := 0; i < len(s); i++ {
		h = h<<5 - h + uint32(s[i])
	}
	return strconv.FormatUint(uint64(h), 10)
}

// setTopLevel sets top-level fields of a JSON object, keeping the others byte for byte.
func setTopLevel(payload []byte, fields map[string]any) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, err
	}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		top[k] = b
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(top); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
