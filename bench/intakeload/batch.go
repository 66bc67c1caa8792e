package main

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
)

// event is a gate exposure as go-sdk sends it (about 520 bytes).
func event(i int) string {
	return fmt.Sprintf(`{"eventName":"statsig::gate_exposure","user":{"userID":"user-%d","email":"u%d@example.com","customIDs":{"companyID":"c%d"},"custom":{"plan":"pro"}},"value":"","metadata":{"gate":"new_checkout","gateValue":"true","ruleID":"6Nq0mUKkBLkAGVIfMCbNNr","reason":"Network","configSyncTime":"1767225600000","initTime":"1767225600000","serverTime":"1767225612345"},"secondaryExposures":[{"gate":"employees","gateValue":"false","ruleID":"default"}],"time":%d,"statsigMetadata":null}`, i, i, i%50, 1767225612345+int64(i))
}

// idLen is the length of the id that makes each body distinct.
const idLen = 20

// batchMaker makes distinct batches of n events cheaply, so that the generator costs little CPU:
// every body is head + a unique id + tail. For gzip, head and tail are compressed once and only the
// id is compressed per body, as a gzip member of its own (a gzip body may hold several members).
type batchMaker struct {
	n              int
	head, tail     []byte
	gzHead, gzTail []byte
	nonce          string // makes ids unique across runs against the same stream
	seq            atomic.Uint64
	pool           sync.Pool // *[]byte request bodies
}

func newBatchMaker(n int) (*batchMaker, error) {
	var rest bytes.Buffer
	for i := 1; i < n; i++ {
		rest.WriteByte(',')
		rest.WriteString(event(i))
	}
	bm := &batchMaker{
		n:    n,
		head: []byte(`{"events":[{"eventName":"intakeload","metadata":{"id":"`),
		tail: []byte(`"},"user":{"userID":"intakeload"},"time":1767225612345}` + rest.String() +
			`],"statsigMetadata":{"sdkType":"go-sdk","sdkVersion":"1.35.1","languageVersion":"go1.26","sessionID":"8d6f1c9e"}}`),
		nonce: strconv.FormatInt(time.Now().UnixNano()%(36*36*36*36*36*36*36*36), 36),
	}
	bm.pool.New = func() any { return new([]byte) }
	var err error
	if bm.gzHead, err = gzipMember(bm.head); err != nil {
		return nil, err
	}
	if bm.gzTail, err = gzipMember(bm.tail); err != nil {
		return nil, err
	}
	return bm, nil
}

func gzipMember(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// nextID appends a new id of idLen bytes: the run's nonce (8 characters), then a counter (12
// digits), both zero-padded on the left so that no two ids are equal.
func (bm *batchMaker) nextID(dst []byte) []byte {
	var num [20]byte
	seq := strconv.AppendUint(num[:0], bm.seq.Add(1), 10)
	for i := len(bm.nonce); i < 8; i++ {
		dst = append(dst, '0')
	}
	dst = append(dst, bm.nonce...)
	for i := len(seq); i < idLen-8; i++ {
		dst = append(dst, '0')
	}
	return append(dst, seq...)
}

// plain writes a new distinct body into buf (reused when it has the size) and returns it with its
// id (a part of it).
func (bm *batchMaker) plain(buf []byte) (body, id []byte) {
	size := len(bm.head) + idLen + len(bm.tail)
	if len(buf) != size {
		buf = make([]byte, size)
		copy(buf, bm.head)
		copy(buf[len(bm.head)+idLen:], bm.tail)
	}
	id = bm.nextID(buf[len(bm.head):len(bm.head)])
	return buf, id
}

// gzipped writes a new distinct gzip body into buf with zw (both reused).
func (bm *batchMaker) gzipped(zw *gzip.Writer, buf []byte) []byte {
	out := bytes.NewBuffer(append(buf[:0], bm.gzHead...))
	zw.Reset(out)
	var id [idLen]byte
	_, _ = zw.Write(bm.nextID(id[:0]))
	_ = zw.Close()
	out.Write(bm.gzTail)
	return out.Bytes()
}
