// Go server (the seed's "best solution"): net/http, one goroutine per connection,
// GOMAXPROCS = the number of cores (-procs), so the runtime spreads goroutines over one OS thread
// per core and balances them itself. Same endpoints as serverscope's Python models:
//
//	GET /                            -> 200 "hello from serverscope\n"
//	GET /work?cpu_ms=&io_ms=&bytes=  -> burn cpu_ms of thread CPU time, sleep io_ms
//	                                    (a goroutine sleeps, its thread does not),
//	                                    answer exactly `bytes` bytes of 'x'
//
// Usage: server -port P [-host H] [-backlog B] [-keepalive-timeout S] [-timeout S] [-procs N]
//
//	[-max-cpu-ms MS] [-pprof-addr 127.0.0.1:P2]
//
// -pprof-addr serves net/http/pprof (its goroutine dump is what `serverscope stack` reads)
// on a listener of its own, never on the server's port: its requests are not the server's
// traffic. Only a loopback address is accepted; one that cannot be opened is said on
// stderr and the server runs on without it.
// A cpu_ms over -max-cpu-ms (10,000, the models' default) is 400. Work stops for a client
// that is gone, the Go way: the burn runs in 10 ms slices and the io_ms wait is a select,
// both watching the request's context, which net/http cancels when the connection closes
// (a reset, or a FIN: net/http's background read takes a half-close as the client leaving);
// the handler then aborts (http.ErrAbortHandler), which closes the connection and so drops
// the rest of a pipeline.
// The listening socket is made by hand so that -backlog reaches listen(2): net.Listen
// always passes net.core.somaxconn. Responses are Content-Length framed, with
// X-Worker: <pid> like the other originals. Standard library only (no module download).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux, served only on -pprof-addr
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	burnSlice          = 10 * time.Millisecond // the context is checked between slices
	maxIOms            = 60000
	maxBytes           = 16 * 1024 * 1024
	hello              = "hello from serverscope\n"
	clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
)

var payload = []byte(strings.Repeat("x", maxBytes))
var maxCPUms = 10000.0 // -max-cpu-ms
var pid = strconv.Itoa(os.Getpid())

func threadCPU() float64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// burnCPU spins until this OS thread has used ms of CPU time, in slices, and returns false
// as soon as ctx is done (the client is gone). The goroutine is pinned to its thread
// meanwhile so that the thread's clock is the right one.
func burnCPU(ctx context.Context, ms float64) bool {
	if ms <= 0 {
		return true
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	end := threadCPU() + ms/1000
	x := 0
	for now := threadCPU(); now < end; now = threadCPU() {
		sliceEnd := math.Min(end, now+burnSlice.Seconds())
		for threadCPU() < sliceEnd {
			for i := 0; i < 2000; i++ {
				x ^= i
			}
		}
		if ctx.Err() != nil {
			return false
		}
	}
	_ = x
	return true
}

// waitIO sleeps ms (the goroutine waits, its thread does not), or until ctx is done: false.
func waitIO(ctx context.Context, ms float64) bool {
	if ms <= 0 {
		return true
	}
	t := time.NewTimer(time.Duration(ms * float64(time.Millisecond)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func reply(w http.ResponseWriter, status int, ctype string, body []byte) {
	h := w.Header()
	h.Set("Server", "serverscope-go")
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Worker", pid)
	w.WriteHeader(status)
	w.Write(body)
}

func handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != "GET" && r.Method != "HEAD" {
		reply(w, 405, "text/plain", []byte("only GET and HEAD\n"))
		return
	}
	if r.URL.Path == "/" {
		reply(w, 200, "text/plain", []byte(hello))
		return
	}
	if r.URL.Path != "/work" {
		reply(w, 404, "text/plain", []byte("not found; try / or /work?cpu_ms=&io_ms=&bytes=\n"))
		return
	}
	params := map[string]float64{"cpu_ms": 0, "io_ms": 0, "bytes": 0}
	limits := map[string]float64{"cpu_ms": maxCPUms, "io_ms": maxIOms, "bytes": maxBytes}
	if q := r.URL.RawQuery; q != "" {
		for _, pair := range strings.Split(q, "&") {
			key, raw, ok := strings.Cut(pair, "=")
			if !ok {
				reply(w, 400, "text/plain", []byte("malformed query string\n"))
				return
			}
			limit, known := limits[key]
			if !known {
				reply(w, 400, "text/plain", []byte(fmt.Sprintf("unknown parameter %q; use cpu_ms, io_ms, bytes\n", key)))
				return
			}
			v, err := strconv.ParseFloat(raw, 64)
			if err != nil {
				reply(w, 400, "text/plain", []byte(fmt.Sprintf("%s must be a number, got %q\n", key, raw)))
				return
			}
			if !(v >= 0 && v <= limit) {
				reply(w, 400, "text/plain", []byte(fmt.Sprintf("%s must be between 0 and %g, got %s\n", key, limit, raw)))
				return
			}
			params[key] = v
		}
	}
	if params["bytes"] != math.Floor(params["bytes"]) {
		reply(w, 400, "text/plain", []byte("bytes must be a whole number\n"))
		return
	}
	if !burnCPU(r.Context(), params["cpu_ms"]) || !waitIO(r.Context(), params["io_ms"]) {
		panic(http.ErrAbortHandler) // nobody to answer: close, quietly
	}
	reply(w, 200, "application/octet-stream", payload[:int(params["bytes"])])
}

// listen opens host:port with the given backlog (net.Listen would use somaxconn).
func listen(host string, port, backlog int) (net.Listener, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		addrs, err := net.LookupIP(host)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("unknown host %s", host)
		}
		ip = addrs[0]
	}
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := ip.To4(); ip4 != nil {
		a := &syscall.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		family = syscall.AF_INET6
		a := &syscall.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err = syscall.Bind(fd, sa); err == nil {
		err = syscall.Listen(fd, backlog)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}

// servePprof serves http.DefaultServeMux (pprof's handlers) on a loopback address.
func servePprof(addr string) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "pprof not started: %s is not a loopback host:port\n", addr)
		return
	}
	pl, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pprof not started: %v\n", err)
		return
	}
	go http.Serve(pl, nil)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8080, "port")
	backlog := flag.Int("backlog", 511, "listen(2) backlog")
	ka := flag.Float64("keepalive-timeout", 5, "seconds an idle keep-alive connection is kept")
	timeout := flag.Float64("timeout", 60, "seconds for a request's headers to arrive")
	procs := flag.Int("procs", runtime.NumCPU(), "GOMAXPROCS: OS threads running goroutines")
	flag.Float64Var(&maxCPUms, "max-cpu-ms", maxCPUms, "a larger /work?cpu_ms= is 400")
	pprofAddr := flag.String("pprof-addr", "", "serve net/http/pprof on this loopback host:port")
	flag.Parse()
	if !(maxCPUms >= 0 && maxCPUms <= 600000) {
		fmt.Fprintf(os.Stderr, "bad value for -max-cpu-ms: %g\n", maxCPUms)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)
	if *pprofAddr != "" {
		servePprof(*pprofAddr)
	}
	ln, err := listen(*host, *port, *backlog)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot listen on %s:%d: %v\n", *host, *port, err)
		os.Exit(98)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(handle),
		ReadHeaderTimeout: time.Duration(*timeout * float64(time.Second)),
		IdleTimeout:       time.Duration(*ka * float64(time.Second)),
		MaxHeaderBytes:    8 * 1024,
	}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
