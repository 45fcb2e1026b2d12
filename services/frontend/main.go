// Command frontend is the HTML tier of the sample application.
//
// It renders pages from the backend's /api/items (BACKEND_URL) and serves
// embedded static assets under /static/. Capacity is modelled honestly: page
// rendering runs on PAGE_WORKERS workers (default 1) with PAGE_WORK_MS of work
// per page (default 100 ms, simulated by sleeping), so one instance manages
// about 10 pages/s. If the backend becomes unreachable the process exits 1, as
// the original does. See ../README.md.
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
	"syscall"
	"time"
)

// version is stamped at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if code, done := handleArgs(os.Args[1:]); done {
		os.Exit(code)
	}
	logger := log.New(os.Stdout, "", log.LstdFlags|log.Lmicroseconds|log.LUTC)
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "frontend: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Exit 1 when the backend is unreachable: the crash is the modelled behaviour.
	fatal := func(reason string) {
		logger.Printf("FATAL: backend %s unreachable: %s; exiting", cfg.backendURL, reason)
		os.Exit(1)
	}
	srv := newServer(cfg, version, logger, fatal)

	ln, err := net.Listen("tcp", cfg.listenAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "frontend: cannot listen on %s: %v (set LISTEN_ADDR to a free address)\n", cfg.listenAddr, err)
		os.Exit(1)
	}
	logger.Printf("frontend %s on %s: waiting up to %s for backend %s", version, ln.Addr(), cfg.startupWait, cfg.backendURL)
	if err := srv.client.waitReady(ctx, cfg.startupWait); err != nil {
		if ctx.Err() != nil {
			logger.Printf("signal received during startup, exiting")
			return
		}
		logger.Printf("FATAL: backend %s did not answer within BACKEND_STARTUP_WAIT=%s: %v", cfg.backendURL, cfg.startupWait, err)
		os.Exit(1)
	}
	logger.Printf("backend is up; serving pages with %d worker(s), %s of work per page, %s added latency", cfg.workers, cfg.pageWork, cfg.latency)
	if cfg.checkInterval > 0 {
		go srv.watchBackend(ctx, cfg.checkInterval)
	}
	if err := serve(ctx, ln, srv.handler(), cfg.shutdownTimeout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "frontend: %v\n", err)
		os.Exit(1)
	}
	logger.Printf("frontend stopped")
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
		fmt.Println("frontend", version)
		return 0, true
	}
	fmt.Fprintf(os.Stderr, "usage: frontend [--version]\nall settings come from environment variables; see /etc/frontend/frontend.env\n")
	return 2, true
}
