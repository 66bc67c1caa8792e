package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// buildRequest serializes one HTTP/1.1 request once, so that sending it is a single write of
// prepared bytes.
func buildRequest(method, host, target string, headers []string, body string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sigedge-loadgen\r\n", method, target, host)
	if body != "" || (method != "GET" && method != "HEAD") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.ContainsAny(h, "\r\n") || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("header %q: want 'Name: value' on one line", h)
		}
		if strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding") {
			return nil, fmt.Errorf("header %q: set by loadgen", h)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", name, value)
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes(), nil
}

var errMalformed = errors.New("malformed HTTP response")

// maxHeaderBytes bounds a response's status line and headers (and a chunk-size line).
const maxHeaderBytes = 32 << 10

type parseState uint8

const (
	stHeaders    parseState = iota
	stBody                  // left bytes of a Content-Length body
	stChunkSize             // a chunk-size line
	stChunkData             // left bytes of a chunk
	stChunkCRLF             // the CRLF after a chunk
	stTrailers              // trailer lines up to the empty one
	stUntilClose            // an unframed body: everything up to the end of the connection
)

// responseParser reads HTTP/1.1 responses from bytes as they arrive on a non-blocking
// connection: only the status and the headers that frame the body (Content-Length,
// Transfer-Encoding: chunked, Connection: close) are read, bodies are skipped without being
// buffered whole, and nothing is allocated for well-formed answers.
type responseParser struct {
	noBody  bool // answers to HEAD
	state   parseState
	left    int64
	status  int
	closing bool
}

// feed consumes bytes of b. It returns how many it used and whether a whole response ended
// there (its status and closing are then in p); with done false and no error it needs more
// bytes than b holds after n.
func (p *responseParser) feed(b []byte) (n int, done bool, err error) {
	for {
		rest := b[n:]
		switch p.state {
		case stHeaders:
			end := bytes.Index(rest, []byte("\r\n\r\n"))
			if end < 0 || end > maxHeaderBytes {
				if end > maxHeaderBytes || len(rest) >= maxHeaderBytes {
					return n, false, fmt.Errorf("%w: headers over %d bytes", errMalformed, maxHeaderBytes)
				}
				return n, false, nil
			}
			if err := p.headers(rest[:end]); err != nil {
				return n, false, err
			}
			n += end + 4
			if p.state == stHeaders { // an interim 1xx answer: the final one follows
				continue
			}
		case stBody, stChunkData:
			k := min(int64(len(rest)), p.left)
			n += int(k)
			p.left -= k
			if p.left > 0 {
				return n, false, nil
			}
			if p.state == stBody {
				p.state = stHeaders
				return n, true, nil
			}
			p.state = stChunkCRLF
		case stChunkCRLF:
			if len(rest) < 2 {
				return n, false, nil
			}
			if rest[0] != '\r' || rest[1] != '\n' {
				return n, false, fmt.Errorf("%w: no CRLF after a chunk", errMalformed)
			}
			n += 2
			p.state = stChunkSize
		case stChunkSize, stTrailers:
			eol := bytes.IndexByte(rest, '\n')
			if eol < 0 {
				if len(rest) >= maxHeaderBytes {
					return n, false, fmt.Errorf("%w: chunk line over %d bytes", errMalformed, maxHeaderBytes)
				}
				return n, false, nil
			}
			line := bytes.TrimRight(rest[:eol], "\r")
			n += eol + 1
			if p.state == stTrailers {
				if len(line) == 0 {
					p.state = stHeaders
					return n, true, nil
				}
				continue
			}
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i] // chunk extensions
			}
			size, err := parseHex(bytes.TrimSpace(line))
			if err != nil {
				return n, false, err
			}
			if size == 0 {
				p.state = stTrailers
			} else {
				p.state, p.left = stChunkData, size
			}
		case stUntilClose:
			return len(b), false, nil
		}
		// Every state returns when it needs bytes it has not got, so this loop ends.
	}
}

// headers reads a status line and header block (without the final CRLF CRLF) and sets the
// state for the body.
func (p *responseParser) headers(block []byte) error {
	line, rest, _ := bytes.Cut(block, []byte("\r\n"))
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	p.status, p.closing = 0, false
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		p.status = p.status*10 + int(c-'0')
	}
	length, chunked := int64(-1), false
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || v < 0 {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			length = v
		case asciiEqualFold(name, "Transfer-Encoding"):
			// chunked is always the last coding (RFC 9112 6.1).
			last := value
			if i := bytes.LastIndexByte(value, ','); i >= 0 {
				last = bytes.TrimSpace(value[i+1:])
			}
			chunked = asciiEqualFold(last, "chunked")
		case asciiEqualFold(name, "Connection"):
			p.closing = p.closing || asciiEqualFold(value, "close")
		}
	}
	switch {
	case p.status >= 100 && p.status < 200 && p.status != 101:
		p.state = stHeaders
	case p.noBody || p.status == 204 || p.status == 304:
		p.state, p.left = stBody, 0
	case chunked:
		p.state = stChunkSize
	case length >= 0:
		p.state, p.left = stBody, length
	default:
		p.state, p.closing = stUntilClose, true
	}
	return nil
}

func parseHex(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 15 {
		return 0, fmt.Errorf("%w: chunk size %q", errMalformed, b)
	}
	var v int64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, fmt.Errorf("%w: chunk size %q", errMalformed, b)
		}
		v = v<<4 | int64(c)
	}
	return v, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
