// Command backend is the JSON API tier of the sample application.
//
// It serves a small product catalogue, fails a configurable share of /api/*
// requests with 500 on purpose (FAILURE_RATE, default 0.02) and keeps running
// when it does; LATENCY (default 0) delays every answer. See ../README.md for endpoints and environment variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// version is stamped at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

// config is everything the process reads from its environment.
type config struct {
	listenAddr      string
	failureRate     float64
	latency         time.Duration
	shutdownTimeout time.Duration
}

// loadConfig reads the environment through getenv and validates every value,
// naming the variable and the expected form when one is wrong.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{listenAddr: ":8080", failureRate: 0.02, shutdownTimeout: 5 * time.Second}
	if v := getenv("LISTEN_ADDR"); v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return cfg, fmt.Errorf("invalid LISTEN_ADDR %q: want host:port or :port, e.g. \":8080\" (%v)", v, err)
		}
		cfg.listenAddr = v
	}
	if v := getenv("FAILURE_RATE"); v != "" {
		rate, err := parseRate(v)
		if err != nil {
			return cfg, err
		}
		cfg.failureRate = rate
	}
	if v := getenv("LATENCY"); v != "" {
		d, err := parseLatency(v)
		if err != nil {
			return cfg, err
		}
		cfg.latency = d
	}
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("invalid SHUTDOWN_TIMEOUT %q: want a positive Go duration such as \"5s\"", v)
		}
		cfg.shutdownTimeout = d
	}
	return cfg, nil
}

// parseRate parses a probability in [0, 1].
func parseRate(v string) (float64, error) {
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate != rate || rate < 0 || rate > 1 {
		return 0, fmt.Errorf("invalid FAILURE_RATE %q: want a number between 0 and 1 (e.g. 0.02; 0 disables injected failures)", v)
	}
	return rate, nil
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

func main() {
	if code, done := handleArgs(os.Args[1:]); done {
		os.Exit(code)
	}
	logger := log.New(os.Stdout, "", log.LstdFlags|log.Lmicroseconds|log.LUTC)
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(2)
	}
	srv := newServer(version, cfg.failureRate, time.Now().UnixNano(), logger)
	srv.latency = cfg.latency
	ln, err := net.Listen("tcp", cfg.listenAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: cannot listen on %s: %v (set LISTEN_ADDR to a free address)\n", cfg.listenAddr, err)
		os.Exit(1)
	}
	logger.Printf("backend %s listening on %s (failure rate %g, latency %s)", version, ln.Addr(), cfg.failureRate, cfg.latency)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, ln, srv.handler(), cfg.shutdownTimeout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
	logger.Printf("backend stopped")
}

// serve runs an HTTP server on ln until ctx is done, then shuts it down
// gracefully, letting in-flight requests finish within timeout.
func serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration, logger *log.Logger) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	logger.Printf("signal received, shutting down (waiting up to %s for in-flight requests)", timeout)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// handleArgs answers --version and rejects anything else: all settings come
// from the environment. done reports that the process must exit with code.
func handleArgs(args []string) (code int, done bool) {
	if len(args) == 0 {
		return 0, false
	}
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Println("backend", version)
		return 0, true
	}
	fmt.Fprintf(os.Stderr, "usage: backend [--version]\nall settings come from environment variables; see /etc/backend/backend.env\n")
	return 2, true
}
