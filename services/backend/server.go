package main

import (
	"encoding/json"
	"log"
	"math/rand"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// server holds the handlers' state. The catalogue is encoded once at start,
// so a request costs a map lookup and a write.
type server struct {
	version     string
	failureRate float64
	latency     time.Duration // added to every answer (LATENCY)
	rng         *lockedRand
	itemsJSON   []byte
	itemJSON    map[int][]byte
	log         *log.Logger
}

func newServer(version string, failureRate float64, seed int64, logger *log.Logger) *server {
	s := &server{
		version:     version,
		failureRate: failureRate,
		rng:         &lockedRand{r: rand.New(rand.NewSource(seed))},
		itemJSON:    make(map[int][]byte),
		log:         logger,
	}
	items := catalogue()
	s.itemsJSON = mustJSON(items)
	for _, it := range items {
		s.itemJSON[it.ID] = mustJSON(it)
	}
	return s
}

// handler returns the routed, logged handler.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handleRoot)
	mux.HandleFunc("/version", s.handleVersion)
	mux.Handle("/api/", s.injectFailures(http.HandlerFunc(s.handleAPI)))
	return logRequests(s.log, delay(s.latency, mux))
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

// handleRoot is the health check: it never fails on purpose.
func (s *server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		writeJSON(w, http.StatusNotFound, []byte(`{"error":"not found"}`))
		return
	}
	if !allowRead(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

func (s *server) handleVersion(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	body := mustJSON(map[string]string{"service": "backend", "version": s.version, "go": runtime.Version()})
	writeJSON(w, http.StatusOK, body)
}

// handleAPI serves /api/items and /api/items/{id}.
func (s *server) handleAPI(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	const prefix = "/api/items/"
	p := r.URL.Path
	switch {
	case p == "/api/items" || p == prefix:
		writeJSON(w, http.StatusOK, s.itemsJSON)
	case strings.HasPrefix(p, prefix):
		id, err := strconv.Atoi(strings.TrimPrefix(p, prefix))
		if body, ok := s.itemJSON[id]; err == nil && ok {
			writeJSON(w, http.StatusOK, body)
			return
		}
		writeJSON(w, http.StatusNotFound, []byte(`{"error":"no such item"}`))
	default:
		writeJSON(w, http.StatusNotFound, []byte(`{"error":"not found"}`))
	}
}

// injectFailures answers a failureRate share of requests with 500, on purpose.
func (s *server) injectFailures(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.failureRate > 0 && s.rng.Float64() < s.failureRate {
			writeJSON(w, http.StatusInternalServerError, []byte(`{"error":"injected failure (FAILURE_RATE)"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, []byte(`{"error":"method not allowed"}`))
	return false
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte{'\n'})
}

func mustJSON(v interface{}) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // static data only: a failure here is a programming error
	}
	return b
}

// lockedRand is a math/rand source safe for concurrent handlers.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
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
