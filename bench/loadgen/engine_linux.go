//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// The engine is one OS thread around epoll, with non-blocking sockets. Each thread wake-up
// costs tens of microseconds on a virtual machine, and Go's scheduler and timers add several
// per request (a goroutine per connection, a timer for the pacing, which the runtime also rounds
// up to whole milliseconds): here a request costs one write, one read and at most one wait,
// whose timeout is the next request's due time to the nanosecond. The system calls are raw, out
// of the runtime's sight: otherwise its monitor thread wakes every 20 µs to take the processor
// of a thread blocked in epoll and hand it back, which cost more CPU than all the rest. With
// -spin the thread does not sleep (but for short rests), so neither the pacing nor the reading of
// an answer waits for a wake-up, and the server does not pay for waking loadgen when it answers
// (over loopback the sender of a packet wakes its reader: a cost a remote client does not put on
// the server).

const (
	sysEpollPwait2  = 441 // the same number on every Linux architecture
	prSetTimerSlack = 29
	// -spin polls for spinFor, then sleeps for spinRest.
	spinFor  = 850 * time.Microsecond
	spinRest = 150 * time.Microsecond
)

// rawConn is one keep-alive connection.
type rawConn struct {
	fd       int
	buf      []byte
	r, w     int // unparsed bytes are buf[r:w]
	parser   responseParser
	queue    []int32 // requests in flight, oldest first, from head
	head     int
	out      []byte // bytes of requests the socket has not taken yet
	dead     bool
	err      error
	statuses map[int]int
}

func (c *rawConn) inflight() int { return len(c.queue) - c.head }

func dialRaw(addr string, noBody bool) (*rawConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	// A descriptor of our own, outside the runtime's poller (which keeps nc's).
	f, err := nc.(*net.TCPConn).File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("non-blocking: %w", err)
	}
	return &rawConn{fd: fd, buf: make([]byte, 64<<10), parser: responseParser{noBody: noBody}, statuses: map[int]int{}}, nil
}

// fail ends the connection; its requests in flight stay unanswered. It returns how many.
func (c *rawConn) fail(err error) int {
	if c.dead {
		return 0
	}
	c.dead, c.err = true, err
	_ = syscall.Close(c.fd) // also leaves the epoll set
	lost := c.inflight()
	c.queue, c.head = c.queue[:0], 0
	return lost
}

// send writes a request, keeping what the socket does not take for the next flush.
func (c *rawConn) send(epfd int, req []byte) error {
	if len(c.out) > 0 {
		c.out = append(c.out, req...)
		return nil
	}
	k, err := rawIO(syscall.SYS_WRITE, c.fd, req)
	if err == syscall.EAGAIN {
		k, err = 0, nil
	}
	if err != nil {
		return fmt.Errorf("writing a request: %w", err)
	}
	if k < len(req) {
		c.out = append(c.out[:0], req[k:]...)
		return c.watch(epfd, syscall.EPOLLIN|syscall.EPOLLOUT)
	}
	return nil
}

// flush writes the bytes left by send.
func (c *rawConn) flush(epfd int) error {
	k, err := rawIO(syscall.SYS_WRITE, c.fd, c.out)
	if err == syscall.EAGAIN {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing a request: %w", err)
	}
	c.out = c.out[:copy(c.out, c.out[k:])]
	if len(c.out) == 0 {
		return c.watch(epfd, syscall.EPOLLIN)
	}
	return nil
}

func (c *rawConn) watch(epfd int, events uint32) error {
	ev := syscall.EpollEvent{Events: events | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// receive reads what the socket holds and records the answers it completes. It returns how
// many requests it resolved (answered, or lost with the connection).
func (c *rawConn) receive(res *result, start time.Time) int {
	if c.w == len(c.buf) {
		if c.r == 0 { // cannot happen: the parser never needs a whole buffer at once
			return c.fail(errors.New("read buffer full"))
		}
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	k, err := rawIO(syscall.SYS_READ, c.fd, c.buf[c.w:])
	switch {
	case err == syscall.EAGAIN:
		return 0
	case err != nil:
		return c.fail(fmt.Errorf("reading: %w", err))
	case k == 0:
		resolved := 0
		if c.parser.state == stUntilClose && c.inflight() > 0 { // that answer ends here
			resolved = c.answered(res, start)
		}
		return resolved + c.fail(errors.New("the server closed the connection"))
	}
	c.w += k
	resolved := 0
	for {
		n, done, err := c.parser.feed(c.buf[c.r:c.w])
		c.r += n
		if err != nil {
			return resolved + c.fail(err)
		}
		if !done {
			break
		}
		if c.inflight() == 0 {
			return resolved + c.fail(errors.New("an answer to no request"))
		}
		resolved += c.answered(res, start)
		if c.parser.closing {
			return resolved + c.fail(errors.New("the server closed the connection (Connection: close)"))
		}
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	return resolved
}

// answered records the answer to the oldest request in flight.
func (c *rawConn) answered(res *result, start time.Time) int {
	seq := c.queue[c.head]
	c.head++
	if c.head == len(c.queue) {
		c.queue, c.head = c.queue[:0], 0
	}
	res.done[seq] = int64(time.Since(start))
	if int(seq) >= res.warm {
		c.statuses[c.parser.status]++
	}
	return 1
}

// pick chooses the connection for the next request: the next idle one in turn, else the live
// one with the fewest requests in flight; nil when none is left.
func pick(conns []*rawConn, next *int) *rawConn {
	var best *rawConn
	bestN := int(^uint(0) >> 1)
	for k := range conns {
		i := (*next + k) % len(conns)
		c := conns[i]
		if c.dead {
			continue
		}
		n := c.inflight()
		if len(c.out) > 0 {
			n += 1 << 20 // a connection that is not taking bytes comes last
		}
		if n == 0 {
			*next = i + 1
			return c
		}
		if n < bestN {
			best, bestN = c, n
		}
	}
	*next++
	return best
}

// rawIO reads or writes a non-blocking descriptor without telling the runtime (it does not block).
func rawIO(call uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(call, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// epollWait waits for events at most timeout (negative: no limit) with nanosecond precision.
func epollWait(epfd int, events []syscall.EpollEvent, timeout time.Duration) (int, error) {
	var ts syscall.Timespec
	tsp := unsafe.Pointer(nil)
	if timeout >= 0 {
		ts = syscall.NsecToTimespec(int64(timeout))
		tsp = unsafe.Pointer(&ts)
	}
	// Raw even when it blocks (see the top of the file): the runtime then believes this thread
	// busy, and its preemption signal, every 10 ms, ends the wait early with EINTR.
	r, _, errno := syscall.RawSyscall6(sysEpollPwait2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(tsp), 0, 0)
	if errno == syscall.ENOSYS { // before Linux 5.11: millisecond timeouts
		ms := -1
		if timeout >= 0 {
			ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
		}
		return syscall.EpollWait(epfd, events, ms)
	}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func generate(cfg config, reqs [][]byte) (*result, error) {
	res := newResult(cfg, len(reqs))
	noBody := cfg.method == "HEAD"
	conns := make([]*rawConn, 0, cfg.conns)
	defer func() {
		for _, c := range conns {
			c.fail(nil)
		}
	}()
	for range cfg.conns {
		c, err := dialRaw(cfg.url.Host, noBody)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", cfg.url.Host, err)
		}
		conns = append(conns, c)
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	defer syscall.Close(epfd)
	byFD := map[int32]*rawConn{}
	for _, c := range conns {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
		byFD[int32(c.fd)] = c
	}

	// The whole run on this thread, whose timer slack (50 µs by default) would delay every
	// timed wait.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)

	events := make([]syscall.EpollEvent, len(conns))
	total := len(res.intended)
	// Past this the run ends, answered or not: a server that stops answering cannot hold it.
	end := cfg.warmup + cfg.duration + cfg.timeout
	next, rr, inflight := 0, 0, 0
	var spunSince time.Duration
	cpu0 := cpuTime()
	start := time.Now()
	for {
		now := time.Since(start)
		for ; next < total && cfg.due(next) <= int64(now); next++ {
			res.intended[next] = cfg.due(next)
			c := pick(conns, &rr)
			res.sent[next] = int64(time.Since(start))
			if c == nil {
				res.sendErrs++ // every connection has failed
				continue
			}
			if c.inflight() > 0 {
				res.pipelined++
			}
			c.queue = append(c.queue, int32(next))
			inflight++
			if err := c.send(epfd, reqs[next%len(reqs)]); err != nil {
				res.sendErrs++
				inflight -= c.fail(err)
			}
		}
		if next == total && inflight == 0 {
			break
		}
		now = time.Since(start)
		if now >= end {
			break
		}
		timeout := end - now
		if next < total {
			timeout = max(0, time.Duration(cfg.due(next))-now)
		}
		if cfg.spin {
			// Spin, but rest now and then: a real-time task (chrt) that never sleeps is stopped by
			// the kernel for 50 ms every second (sched_rt_runtime_us). The rest is a plain sleep,
			// not a wait for events, which an answer would end at once.
			if now-spunSince >= spinFor {
				rest := syscall.NsecToTimespec(int64(spinRest))
				_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&rest)), 0, 0)
				spunSince = time.Since(start)
			}
			timeout = 0
		}
		n, err := epollWait(epfd, events, timeout)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("epoll_pwait2: %w", err)
		}
		for _, ev := range events[:n] {
			c := byFD[ev.Fd]
			if c == nil || c.dead {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 && len(c.out) > 0 {
				if err := c.flush(epfd); err != nil {
					inflight -= c.fail(err)
					continue
				}
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP|syscall.EPOLLRDHUP) != 0 {
				inflight -= c.receive(res, start)
			}
		}
	}
	res.wall = time.Since(start)
	res.cpu = cpuTime() - cpu0
	for _, c := range conns {
		for s, n := range c.statuses {
			res.statuses[s] += n
		}
		if c.err != nil {
			res.connErrs = append(res.connErrs, c.err.Error())
		} else if c.inflight() > 0 {
			res.connErrs = append(res.connErrs, fmt.Sprintf("%d requests unanswered after -timeout", c.inflight()))
		}
	}
	return res, nil
}

// cpuTime is the CPU time (user + system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
