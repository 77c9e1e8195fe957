package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/eventtap/eventtap/admin"
	"github.com/eventtap/eventtap/cluster"
	"github.com/eventtap/eventtap/configerr"
	"github.com/eventtap/eventtap/outbox"
	"github.com/eventtap/eventtap/proxy"
	"github.com/eventtap/eventtap/rules"
	"github.com/eventtap/eventtap/rules/watch"
)

// shutdownTimeout bounds how long the outbox may take to finish in-flight
// deliveries after the HTTP servers have stopped.
const shutdownTimeout = 20 * time.Second

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT
// is not set. It keeps a bare run near 128 MiB RSS (.ci/bench). The price
// is paid only under sustained full load: Badger's table builders keep
// 40-55 MiB live, so the GC runs often; with 4 MiB memtables it ran back
// to back and the tapped rate fell by half within 30 s, with 2 MiB ones
// (outbox) it keeps ~4k req/s. GOMEMLIMIT=160MiB holds the rate level for
// ~200 MiB RSS. README "Performance" has the runs; the Kubernetes examples
// set a higher GOMEMLIMIT.
const defaultMemoryLimit = 80 << 20

func configFlag(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet("eventtap "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the YAML configuration file")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "eventtap %s: --config FILE is required (see config.example.yaml)\n", name)
		return "", false
	}
	return *path, true
}

// printProblems writes every leaf of err on its own line.
func printProblems(w io.Writer, err error) {
	for _, e := range inFileOrder(flatten(err)) {
		fmt.Fprintln(w, e)
	}
}

// inFileOrder sorts problems as a reader meets them: files in the order
// they first come up, and by line and column within a file. The checks run
// section by section, so they find problems in another order.
func inFileOrder(errs []error) []error {
	type placed struct {
		err             error
		file, line, col int
	}
	files := map[string]int{}
	ps := make([]placed, len(errs))
	for i, e := range errs {
		ps[i] = placed{err: e, file: 1 << 30} // unplaced: after every placed one
		if ce := configerr.As(e); ce != nil {
			if _, ok := files[ce.File]; !ok {
				files[ce.File] = len(files)
			}
			ps[i] = placed{e, files[ce.File], ce.Line, ce.Column}
		}
	}
	slices.SortStableFunc(ps, func(a, b placed) int {
		return cmp.Or(cmp.Compare(a.file, b.file), cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col))
	})
	for i, p := range ps {
		errs[i] = p.err
	}
	return errs
}

// loadAll loads the configuration and compiles its rules, reporting the
// problems of both at once.
func loadAll(path string) (config, *rules.Engine, error) {
	cfg, cfgErr := loadConfig(path)
	if !cfg.rulesDecoded {
		return cfg, nil, cfgErr
	}
	eng, rulesErr := cfg.compileRules()
	if err := errors.Join(cfgErr, rulesErr); err != nil {
		return cfg, nil, err
	}
	return cfg, eng, nil
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.slogLevel()}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdServe(args []string, _, stderr io.Writer) int { return runNode("serve", args, stderr) }

// cmdDeliver runs a cluster node without the proxy (SPEC §1, §8): the
// admin API and its share of delivery, for a delivery fleet apart from
// the order service's pods.
func cmdDeliver(args []string, _, stderr io.Writer) int { return runNode("deliver", args, stderr) }

func runNode(name string, args []string, stderr io.Writer) int {
	path, ok := configFlag(name, args, stderr, nil)
	if !ok {
		return 2
	}
	cfg, eng, err := loadAll(path)
	if err != nil {
		printProblems(stderr, err)
		fmt.Fprintf(stderr, "eventtap %s: refusing to start; fix the problems above (eventtap validate --config %s)\n", name, path)
		return 1
	}
	if cfg.deliverOnly = name == "deliver"; cfg.deliverOnly && !cfg.Cluster.Enabled() {
		fmt.Fprintf(stderr, "%s:1:1: cluster.nats.urls: eventtap deliver runs a delivery node of a cluster; set cluster.nats.urls (README, \"Running several replicas\"), or run eventtap serve\n", path)
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	if os.Getenv("GOMEMLIMIT") == "" {
		// A sidecar shares its pod's memory: without a limit the Go heap
		// may grow to twice what is live before collecting.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	// Until the rules watcher takes SIGHUP over, a reload signal sent while
	// the store opens must not kill the process (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, eng, logger); err != nil {
		logger.Error("eventtap stopped with an error", "err", err)
		return 1
	}
	return 0
}

// serve runs the sidecar until ctx ends, then stops the HTTP servers and
// closes the outbox last.
func serve(ctx context.Context, cfg config, eng *rules.Engine, logger *slog.Logger) error {
	return serveOn(ctx, cfg, eng, logger, listeners{})
}

// listeners are bound by a caller that needs the addresses before the
// sidecar starts (the demo); nil ones are bound from the configuration.
type listeners struct{ proxy, admin net.Listener }

// serveOn is serve on the listeners given.
func serveOn(ctx context.Context, cfg config, eng *rules.Engine, logger *slog.Logger, lns listeners) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	eventTypes := rules.EventTypes(cfg.Rules.EventTypes)

	ob, err := outbox.Open(ctx, cfg.Storage, cfg.Delivery, eventTypes, logger, reg)
	if err != nil {
		return fmt.Errorf("open outbox in %s: %w", cfg.Storage.Dir, err)
	}
	// The store closes last, after every HTTP server has stopped, so that
	// requests still in flight can commit their events.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := ob.Close(closeCtx); err != nil {
			logger.Error("closing the outbox", "err", err)
		}
	}()

	var watchPaths []string
	if p := cfg.rulesFilePath(); p != "" {
		watchPaths = append(watchPaths, p)
	}
	w, err := watch.New(logger, reg, eng, watchPaths, func() (*rules.Engine, error) {
		c, err := loadConfig(cfg.file)
		if err != nil {
			return nil, err
		}
		// The outbox, its metrics and the GraphQL enum were built with the
		// event types read at start.
		if !slices.Equal(c.Rules.EventTypes, cfg.Rules.EventTypes) {
			return nil, fmt.Errorf("%s: event_types changed; restart eventtap to apply a new list (the rules were not reloaded)", cfg.file)
		}
		return c.compileRules()
	})
	if err != nil {
		return err
	}
	checks := map[string]admin.Check{"store": ob.Ping}
	var px *proxy.Proxy
	if !cfg.deliverOnly {
		if px, err = proxy.New(cfg.Proxy, logger, reg, w, ob); err != nil {
			return err
		}
		checks["upstream"] = px.CheckUpstream
	}
	// Every rule's counters exist at 0 from the start and after each
	// reload (SPEC §6).
	w.OnActivate(func(e *rules.Engine) {
		if px != nil {
			px.SetRules(e.Names())
		}
		ob.SetRules(e.Rules())
	})
	node, err := startCluster(cfg, ob, logger, reg, checks)
	if err != nil {
		return err
	}
	adm, err := admin.New(cfg.Admin, logger, reg, ob, eventTypes, checks)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	if px != nil {
		g.Go(func() error {
			if lns.proxy != nil {
				return px.Serve(gctx, lns.proxy)
			}
			return px.Run(gctx)
		})
	}
	g.Go(func() error {
		if lns.admin != nil {
			return adm.Serve(gctx, lns.admin)
		}
		return adm.Run(gctx)
	})
	g.Go(func() error { return w.Run(gctx) })
	if node != nil {
		defer node.Close()
		g.Go(func() error { return node.Run(gctx) })
	}
	if px != nil {
		logger.Info("eventtap starting", "version", version, "proxy", cfg.Proxy.Listen, "upstream", cfg.Proxy.Upstream,
			"admin", cfg.Admin.Listen, "rules", eng.Len(), "durability", cfg.Proxy.Durability)
	} else {
		logger.Info("eventtap starting a delivery node (no proxy)", "version", version, "admin", cfg.Admin.Listen, "node", node.Name())
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("eventtap stopping: servers closed, flushing the outbox")
	return err
}

// startCluster joins the cluster when `cluster` is configured (SPEC §8):
// the outbox then shares its registry and `changed` state through NATS,
// and /readyz reports NATS without failing on it. It returns nil on one
// node.
func startCluster(full config, ob *outbox.Outbox, logger *slog.Logger, reg prometheus.Registerer, checks map[string]admin.Check) (*cluster.Node, error) {
	cfg := full.Cluster
	if !cfg.Enabled() {
		return nil, nil
	}
	node, err := cluster.New(cfg, cluster.Options{Local: ob, StateTTL: ob.StateTTL(), Retention: full.Storage.Retention, Delivery: full.Delivery}, logger, reg)
	if err != nil {
		return nil, err
	}
	ob.SetCluster(outbox.Cluster{Registry: node.Registry(), State: node.State(), StreamDelivery: true, Requeue: node, TestLogs: node, Owned: node.Owned()})
	checks["nats"] = admin.Advisory(node.Check)
	return node, nil
}
