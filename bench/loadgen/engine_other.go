//go:build !linux

package main

import (
	"errors"
	"time"
)

// generate needs epoll (engine_linux.go): loadgen measures on Linux only.
func generate(config, [][]byte) (*result, error) {
	return nil, errors.New("loadgen runs on Linux only")
}

func cpuTime() time.Duration { return 0 }
