package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// config is everything the process reads from its environment.
type config struct {
	listenAddr      string
	backendURL      string // without trailing slash
	pageWork        time.Duration
	workers         int
	queueTimeout    time.Duration
	backendTimeout  time.Duration
	backendRetries  int
	maxFailures     int
	startupWait     time.Duration
	checkInterval   time.Duration
	shutdownTimeout time.Duration
	latency         time.Duration // added to every answer (LATENCY)
}

func defaultConfig() config {
	return config{
		listenAddr:      ":8080",
		backendURL:      "http://backend:8080",
		pageWork:        100 * time.Millisecond,
		workers:         1,
		queueTimeout:    2 * time.Second,
		backendTimeout:  time.Second,
		backendRetries:  2,
		maxFailures:     3,
		startupWait:     10 * time.Second,
		checkInterval:   time.Second,
		shutdownTimeout: 5 * time.Second,
	}
}

// loadConfig reads the environment through getenv and validates every value,
// naming the variable and the expected form when one is wrong.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := defaultConfig()
	if v := getenv("LISTEN_ADDR"); v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return cfg, fmt.Errorf("invalid LISTEN_ADDR %q: want host:port or :port, e.g. \":8080\" (%v)", v, err)
		}
		cfg.listenAddr = v
	}
	if v := getenv("BACKEND_URL"); v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("invalid BACKEND_URL %q: want an absolute http(s) URL such as \"http://backend:8080\"", v)
		}
		cfg.backendURL = strings.TrimRight(v, "/")
	}
	ints := []struct {
		name string
		dst  *int
		min  int
	}{
		{"PAGE_WORKERS", &cfg.workers, 1},
		{"BACKEND_RETRIES", &cfg.backendRetries, 0},
		{"BACKEND_MAX_FAILURES", &cfg.maxFailures, 1},
	}
	for _, f := range ints {
		if v := getenv(f.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < f.min {
				return cfg, fmt.Errorf("invalid %s %q: want a whole number >= %d", f.name, v, f.min)
			}
			*f.dst = n
		}
	}
	if v := getenv("PAGE_WORK_MS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("invalid PAGE_WORK_MS %q: want milliseconds as a whole number >= 0, e.g. 100", v)
		}
		cfg.pageWork = time.Duration(n) * time.Millisecond
	}
	if v := getenv("LATENCY"); v != "" {
		d, err := parseLatency(v)
		if err != nil {
			return cfg, err
		}
		cfg.latency = d
	}
	durations := []struct {
		name      string
		dst       *time.Duration
		allowZero bool
	}{
		{"QUEUE_TIMEOUT", &cfg.queueTimeout, false},
		{"BACKEND_TIMEOUT", &cfg.backendTimeout, false},
		{"BACKEND_STARTUP_WAIT", &cfg.startupWait, true},
		{"BACKEND_CHECK_INTERVAL", &cfg.checkInterval, true},
		{"SHUTDOWN_TIMEOUT", &cfg.shutdownTimeout, false},
	}
	for _, f := range durations {
		if v := getenv(f.name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || (d == 0 && !f.allowZero) {
				want := "a positive Go duration such as \"2s\" or \"500ms\""
				if f.allowZero {
					want = "a Go duration such as \"2s\" or \"500ms\" (0 allowed)"
				}
				return cfg, fmt.Errorf("invalid %s %q: want %s", f.name, v, want)
			}
			*f.dst = d
		}
	}
	return cfg, nil
}

// maxLatency bounds LATENCY: a longer delay would only make every client time out.
const maxLatency = time.Minute

// parseLatency parses LATENCY, a Go duration from 0 to maxLatency.
func parseLatency(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxLatency {
		return 0, fmt.Errorf("invalid LATENCY %q: want a Go duration from 0 to 1m such as \"50ms\" (added to every answer; 0 disables)", v)
	}
	return d, nil
}
