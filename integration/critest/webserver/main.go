// Command webserver is the web server of the CRI validation suite's nginx
// and httpd images (integration/critest), which are built here from a
// local root file system: no registry is reachable. It answers every GET
// with a small page, as the suite's specs check, and does what they look
// for of the real servers: installed as nginx, its first process is
// "nginx: master process ..." in /proc/PID/cmdline (it re-executes itself
// under that name); it writes its PID to /var/run/NAME.pid, prints its
// name to stderr, listens on $WEBSERVER_PORT (default 80) and exits on
// TERM, INT or QUIT, even as PID 1 of a container.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// masterPrefix begins nginx's master process's command line.
const masterPrefix = "nginx: master process "

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("webserver: finding its executable: %w", err)
	}
	name := filepath.Base(exe)
	if name == "nginx" && !strings.HasPrefix(os.Args[0], masterPrefix) {
		// Same PID, same executable (so the same comm, for pidof), and
		// the command line nginx's master shows.
		argv := []string{masterPrefix + strings.Join(os.Args, " ")}
		if err := syscall.Exec(exe, argv, os.Environ()); err != nil {
			return fmt.Errorf("%s: re-executing as its master process: %w", name, err)
		}
	}
	port := 80
	if p := os.Getenv("WEBSERVER_PORT"); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("%s: WEBSERVER_PORT %q: %w", name, p, err)
		}
	}
	pidFile := filepath.Join("/var/run", name+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("%s: writing its pid file: %w", name, err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	page := fmt.Sprintf("<html><body><h1>%s</h1></body></html>\n", name)
	srv := &http.Server{
		Addr: ":" + strconv.Itoa(port),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(page))
		}),
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.ListenAndServe() }()
	fmt.Fprintf(os.Stderr, "%s: serving on port %d (pid %d)\n", name, port, os.Getpid())
	select {
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "%s: %v, exiting\n", name, sig)
		return nil
	case err := <-errs:
		return fmt.Errorf("%s: %w", name, err)
	}
}
