package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed static templates
var assets embed.FS

// item is the part of the backend's catalogue entry the page shows.
type item struct {
	ID         int      `json:"id"`
	SKU        string   `json:"sku"`
	Name       string   `json:"name"`
	Category   string   `json:"category"`
	PriceCents int      `json:"price_cents"`
	Currency   string   `json:"currency"`
	InStock    int      `json:"in_stock"`
	Tags       []string `json:"tags"`
}

type pageData struct {
	Items     []item
	Version   string
	Host      string
	BackendMs int64
	Attempts  int
}

// server holds the handlers' state.
type server struct {
	cfg       config
	version   string
	host      string
	client    *backendClient
	tracker   *failureTracker
	workers   chan struct{} // one slot per page worker: at most cfg.workers pages at a time
	page      *template.Template
	static    http.Handler
	log       *log.Logger
	fatal     func(reason string) // called once when the backend counts as gone
	fatalOnce sync.Once
}

func newServer(cfg config, version string, logger *log.Logger, fatal func(string)) *server {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	funcs := template.FuncMap{"price": func(cents int, currency string) string {
		return fmt.Sprintf("%d.%02d %s", cents/100, cents%100, currency)
	}}
	staticFS, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // embedded at build time: a failure is a programming error
	}
	return &server{
		cfg:     cfg,
		version: version,
		host:    host,
		client:  newBackendClient(cfg.backendURL, cfg.backendTimeout, cfg.backendRetries),
		tracker: &failureTracker{max: cfg.maxFailures},
		workers: make(chan struct{}, cfg.workers),
		page:    template.Must(template.New("page.html").Funcs(funcs).ParseFS(assets, "templates/page.html")),
		static:  http.StripPrefix("/static/", http.FileServer(http.FS(staticFS))),
		log:     logger,
		fatal:   fatal,
	}
}

// handler returns the routed, logged handler.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handlePage)
	mux.HandleFunc("/static/", s.handleStatic)
	mux.HandleFunc("/version", s.handleVersion)
	return logRequests(s.log, delay(s.cfg.latency, mux))
}

// delay holds every answer for d (LATENCY) before handling it, so that tests
// can make a slower release of the same code. A client that goes away
// meanwhile gets no answer; the log line says 499 (nginx's "client closed
// request").
func delay(d time.Duration, next http.Handler) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
			w.WriteHeader(499)
		}
	})
}

// observe feeds one backend result to the tracker and calls s.fatal once
// when the backend counts as gone.
func (s *server) observe(res fetchResult) {
	mustExit, n := s.tracker.observe(res)
	if res.outcome == outcomeUnreachable {
		s.log.Printf("backend unreachable (%d/%d consecutive): %s", n, s.cfg.maxFailures, res.reason())
	}
	if mustExit {
		s.fatalOnce.Do(func() {
			s.fatal(fmt.Sprintf("%d consecutive unreachable results, last: %s", n, res.reason()))
		})
	}
}

// watchBackend probes GET / every interval so a vanished backend is noticed
// even without traffic.
func (s *server) watchBackend(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.observe(s.client.get("/"))
		}
	}
}

// handlePage renders the catalogue page; it is also the health check.
func (s *server) handlePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if !allowRead(w, r) {
		return
	}
	// Wait for a free worker, but never longer than QUEUE_TIMEOUT.
	timer := time.NewTimer(s.cfg.queueTimeout)
	select {
	case s.workers <- struct{}{}:
		timer.Stop()
	case <-timer.C:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("overloaded: no page worker free within %s", s.cfg.queueTimeout), http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		timer.Stop()
		http.Error(w, "client went away while queued", http.StatusServiceUnavailable)
		return
	}
	body, status, msg := s.renderPage()
	<-s.workers

	w.Header().Set("X-Frontend-Host", s.host)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// renderPage does one page's work while holding a worker: fetch the items,
// spend cfg.pageWork (sleeping: the cost modelled is the worker being busy,
// not CPU), render the template.
func (s *server) renderPage() (body []byte, status int, msg string) {
	res := s.client.get("/api/items")
	s.observe(res)
	if res.outcome != outcomeOK {
		return nil, http.StatusBadGateway, "backend error: " + res.reason()
	}
	var items []item
	if err := json.Unmarshal(res.body, &items); err != nil {
		return nil, http.StatusBadGateway, "backend sent invalid items JSON: " + err.Error()
	}
	time.Sleep(s.cfg.pageWork)
	var buf bytes.Buffer
	data := pageData{Items: items, Version: s.version, Host: s.host, BackendMs: res.elapsed.Milliseconds(), Attempts: res.attempts}
	if err := s.page.Execute(&buf, data); err != nil {
		return nil, http.StatusInternalServerError, "render: " + err.Error()
	}
	return buf.Bytes(), http.StatusOK, ""
}

// handleStatic serves the embedded assets; they bypass the page workers.
func (s *server) handleStatic(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
		http.NotFound(w, r)
		return
	}
	if !allowRead(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	s.static.ServeHTTP(w, r)
}

func (s *server) handleVersion(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	body, _ := json.Marshal(map[string]string{"service": "frontend", "version": s.version, "go": runtime.Version()})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests writes one line per request: method, path, status, duration.
func logRequests(logger *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		logger.Printf("%s %s %d %s", r.Method, r.URL.Path, rec.status, time.Since(start).Round(time.Microsecond))
	})
}
