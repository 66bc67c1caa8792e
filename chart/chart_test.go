package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigedge/sigedge/internal/config"
)

// scenario is one way of installing the chart; every file in ci/ is one.
type scenario struct {
	name   string
	values string  // a file in ci/, or "" for the chart's defaults
	cl     cluster // Secrets the cluster holds for existingSecret values

	embedded, persistent bool
	natsReplicas         int    // expected nats.stream.replicas
	proxyReadyz          string // expected readiness path of the proxy; "" is /readyz
}

var scenarios = []scenario{
	{name: "defaults", natsReplicas: 3},
	{name: "production", values: "ci/production-values.yaml", natsReplicas: 3},
	{name: "embedded", values: "ci/embedded-values.yaml", embedded: true, natsReplicas: 1},
	{name: "embedded-persistent", values: "ci/embedded-persistent-values.yaml", embedded: true, persistent: true, natsReplicas: 1},
	{name: "existing-secrets", values: "ci/existing-secrets-values.yaml", natsReplicas: 3, proxyReadyz: "/readyz?exclude=nats", cl: cluster{
		"region-nats-auth":   {"sigedge.creds": "creds", "ca.pem": "ca", "client.pem": "cert", "client-key.pem": "key"},
		"region-rulesets":    {"airgapped.json": `{"time": 1}`},
		"region-sigedge-env": {"SIGEDGE_ALLOWED_SDK_KEYS": "secret-airgapped", "SIGEDGE_LOG_LEVEL": "warn"},
	}},
}

func (s scenario) args(extra ...string) []string {
	var a []string
	if s.values != "" {
		a = append(a, "-f", s.values)
	}
	return append(a, extra...)
}

func TestEveryCIValuesFileIsAScenario(t *testing.T) {
	files, err := filepath.Glob("ci/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*.yaml files (%v)", err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.values == f }) {
			t.Errorf("%s is not rendered by any scenario: add it to scenarios", f)
		}
	}
}

func TestHelmLint(t *testing.T) {
	helm, _ := requireTools(t)
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", ".", "--kube-version", kubeVersion}, s.args()...)
			if _, err := runHelm(t, helm, args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestChartScenarios renders each scenario, checks every object strictly against the Kubernetes API
// types, loads every container's configuration with sigedge's loader from the files and environment
// the pod would have, and checks the wiring between objects.
func TestChartScenarios(t *testing.T) {
	_, kubecheck := requireTools(t)
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			root := t.TempDir()
			r := render(t, s.args("--set", "mountPath="+filepath.Join(root, "etc", "sigedge"))...)
			runKubecheck(t, kubecheck, r.manifest)
			checkRelease(t, r, s, root)
		})
	}
}

func runKubecheck(t *testing.T, kubecheck string, manifest []byte) {
	t.Helper()
	cmd := exec.Command(kubecheck)
	cmd.Stdin = bytes.NewReader(manifest)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("kubecheck: %v\n%s", err, out.String())
	}
}

// TestKubecheckRejectsUnknownFields keeps the strict check honest: a misspelt field must fail it.
func TestKubecheckRejectsUnknownFields(t *testing.T) {
	_, kubecheck := requireTools(t)
	r := render(t)
	bad := bytes.Replace(r.manifest, []byte("readinessProbe:"), []byte("readinesProbe:"), 1)
	if bytes.Equal(bad, r.manifest) {
		t.Fatal("the rendered chart has no readinessProbe")
	}
	cmd := exec.Command(kubecheck)
	cmd.Stdin = bytes.NewReader(bad)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "readinesProbe") {
		t.Fatalf("kubecheck accepted a misspelt field (err %v):\n%s", err, out)
	}
}

func checkRelease(t *testing.T, r *release, s scenario, root string) {
	ws := r.workloads(t)
	proxy, fwd := ws["proxy"], ws["forwarder"]
	if proxy == nil || fwd == nil || len(ws) != 2 {
		t.Fatalf("want a proxy and a forwarder workload, got %v", keys(ws))
	}
	wantKind := "Deployment"
	if s.persistent {
		wantKind = "StatefulSet"
	}
	if proxy.obj.Kind != wantKind || fwd.obj.Kind != "Deployment" {
		t.Errorf("proxy is a %s (want %s), forwarder a %s", proxy.obj.Kind, wantKind, fwd.obj.Kind)
	}

	cfgs := map[string]config.Config{}
	for _, comp := range []string{"proxy", "forwarder"} {
		w := ws[comp]
		p := w.pod()
		if len(p.Containers) != 1 || p.Containers[0].Name != comp {
			t.Fatalf("%s: want one container named %s", comp, comp)
		}
		c := &p.Containers[0]
		cfg, err := r.loadContainerConfig(p, c, root, s.cl)
		if err != nil {
			t.Fatalf("%s: the configuration does not load as the pod would see it: %v", comp, err)
		}
		cfgs[comp] = cfg
		// The ConfigMap itself, with Parse (no environment), while this container's files exist.
		for _, cm := range r.all("ConfigMap") {
			for k, v := range cm.Data {
				if _, err := config.Parse([]byte(v)); err != nil {
					t.Errorf("ConfigMap %s key %s is refused by config.Parse: %v", cm.Metadata.Name, k, err)
				}
			}
		}
		readyz := "/readyz"
		if comp == "proxy" && s.proxyReadyz != "" {
			readyz = s.proxyReadyz
		}
		checkPod(t, r, comp, w, c, cfg, readyz)
		// A release named sigedge gets SIGEDGE_*_SERVICE_HOST/_PORT links when service links are on
		// (the chart turns them off): the configuration loader must still accept the environment.
		links := *p
		on := true
		links.EnableServiceLinks = &on
		if _, err := r.loadContainerConfig(&links, c, root, s.cl); err != nil {
			t.Errorf("%s: with service links on the configuration is refused: %v", comp, err)
		}
	}

	pc, fc := cfgs["proxy"], cfgs["forwarder"]
	for comp, cfg := range cfgs {
		if cfg.NATS.Stream.Replicas != s.natsReplicas {
			t.Errorf("%s: nats.stream.replicas = %d, want %d", comp, cfg.NATS.Stream.Replicas, s.natsReplicas)
		}
	}
	if fc.NATS.Embedded {
		t.Error("the forwarder must never start an embedded server")
	}
	if s.embedded {
		checkEmbedded(t, r, s, proxy, pc, fc)
	} else {
		if pc.NATS.Embedded || len(pc.NATS.URLs) == 0 || !slices.Equal(pc.NATS.URLs, fc.NATS.URLs) {
			t.Errorf("external NATS: proxy embedded=%v urls=%v, forwarder urls=%v", pc.NATS.Embedded, pc.NATS.URLs, fc.NATS.URLs)
		}
		for _, m := range proxy.pod().Containers[0].VolumeMounts {
			if m.Name == "nats-data" {
				t.Error("external NATS: the proxy mounts a JetStream volume")
			}
		}
		if r.find("Service", r.name+"-nats") != nil || len(r.all("NetworkPolicy")) > 0 {
			t.Error("external NATS: an embedded-NATS Service or NetworkPolicy is rendered")
		}
	}

	checkServices(t, r, ws)
	checkScaling(t, r, s, ws)
	if len(r.all("Ingress")) > 0 {
		checkIngress(t, r)
	}
	if len(r.all("ServiceMonitor")) > 0 {
		checkServiceMonitor(t, r, ws)
	}
}

// checkPod checks one workload's pod against the configuration its container loaded.
func checkPod(t *testing.T, r *release, comp string, w *workloadObj, c *ctr, cfg config.Config, readyz string) {
	t.Helper()
	p := w.pod()
	errorf := func(format string, args ...any) { t.Errorf(comp+": "+format, args...) }

	// Security.
	if p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot || p.SecurityContext.RunAsUser == nil || *p.SecurityContext.RunAsUser == 0 {
		errorf("pod must run as a non-root user")
	}
	if p.SecurityContext.SeccompProfile.Type != "RuntimeDefault" || c.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		errorf("seccomp profile must be RuntimeDefault")
	}
	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		(sc.Privileged != nil && *sc.Privileged) || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		errorf("container security context must be read-only, unprivileged and drop ALL capabilities: %+v", sc)
	}
	if p.EnableServiceLinks == nil || *p.EnableServiceLinks || p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		errorf("service links and the service-account token must be off")
	}
	if want := "/usr/local/bin/sigedge-" + comp; !slices.Equal(c.Command, []string{want}) {
		errorf("command %q, want [%s] (the Dockerfile's path)", c.Command, want)
	}

	// Writable places: /tmp and (embedded proxy) the JetStream directory, nothing else.
	vols := map[string]vol{}
	for _, v := range p.Volumes {
		vols[v.Name] = v
	}
	claims := map[string]bool{}
	for _, vct := range w.Spec.VolumeClaimTemplates {
		claims[vct.Metadata.Name] = true
	}
	tmp := false
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		writable := claims[m.Name] || ok && (v.EmptyDir != nil || v.PersistentVolumeClaim != nil)
		if !m.ReadOnly && !writable {
			errorf("mount %s at %s must be read-only", m.Name, m.MountPath)
		}
		if m.MountPath == "/tmp" && writable && v.EmptyDir != nil {
			tmp = true
		}
	}
	if !tmp {
		errorf("no emptyDir at /tmp")
	}

	// Ports, probes and scraping follow the configuration.
	ports := map[string]int{}
	for _, cp := range c.Ports {
		ports[cp.Name] = cp.ContainerPort
	}
	adminAddr := cfg.Forwarder.AdminListen
	if comp == "proxy" {
		adminAddr = cfg.Proxy.AdminListen
		if ports["http"] != listenPort(t, cfg.Proxy.Listen) {
			errorf("http port %d, configuration listens on %s", ports["http"], cfg.Proxy.Listen)
		}
	}
	admin := listenPort(t, adminAddr)
	if ports["admin"] != admin {
		errorf("admin port %d, configuration listens on %s", ports["admin"], adminAddr)
	}
	for name, pr := range map[string]struct {
		p    *probe
		path string
	}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, readyz}} {
		if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path || (pr.p.HTTPGet.Port != "admin" && pr.p.HTTPGet.Port != strconv.Itoa(admin)) {
			got := "none"
			if pr.p != nil && pr.p.HTTPGet != nil {
				got = pr.p.HTTPGet.Path + " on port " + pr.p.HTTPGet.Port
			}
			errorf("%s probe must GET %s on the admin port, got %s", name, pr.path, got)
		}
	}
	ann := w.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(admin) || ann["prometheus.io/path"] != "/metrics" {
		errorf("scrape annotations %v do not point at the admin port %d", ann, admin)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ann["checksum/config"]) {
		errorf("no checksum/config annotation")
	}

	// Resources, and the drain the grace period must cover.
	for _, res := range []string{"cpu", "memory"} {
		if c.Resources.Requests[res] == "" || c.Resources.Limits[res] == "" {
			errorf("resources: %s request and limit must be set, got %+v", res, c.Resources)
		}
	}
	drain := cfg.Forwarder.ShutdownTimeout
	if comp == "proxy" {
		drain = cfg.Proxy.ShutdownTimeout
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		drain += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if p.TerminationGracePeriodSeconds == nil || time.Duration(*p.TerminationGracePeriodSeconds)*time.Second <= drain {
		errorf("terminationGracePeriodSeconds %v must exceed the drain (%s)", p.TerminationGracePeriodSeconds, drain)
	}
	if comp == "forwarder" {
		if lim := quantity(t, c.Resources.Limits["memory"]); lim <= int64(cfg.Forwarder.MaxInFlightBytes) {
			errorf("memory limit %s does not exceed forwarder.max_in_flight_bytes %s", c.Resources.Limits["memory"], cfg.Forwarder.MaxInFlightBytes)
		}
	}

	// Spreading: every constraint selects this workload's pods.
	for _, ts := range p.TopologySpreadConstraints {
		if !selects(ts.LabelSelector.MatchLabels, w.Spec.Template.Metadata.Labels) {
			errorf("topology spread on %s does not select the pods", ts.TopologyKey)
		}
	}
	_ = r
}

func checkEmbedded(t *testing.T, r *release, s scenario, proxy *workloadObj, pc, fc config.Config) {
	t.Helper()
	if !pc.NATS.Embedded || pc.NATS.Host != "0.0.0.0" {
		t.Errorf("embedded NATS: the proxy must run it on 0.0.0.0, got embedded=%v host=%s", pc.NATS.Embedded, pc.NATS.Host)
	}
	if proxy.Spec.Replicas == nil || *proxy.Spec.Replicas != 1 {
		t.Errorf("embedded NATS: proxy replicas %v, want 1", proxy.Spec.Replicas)
	}
	if !s.persistent && proxy.Spec.Strategy.Type != "Recreate" {
		t.Errorf("embedded NATS: proxy strategy %q, want Recreate", proxy.Spec.Strategy.Type)
	}
	c := proxy.pod().Containers[0]
	natsPort := 0
	for _, p := range c.Ports {
		if p.Name == "nats" {
			natsPort = p.ContainerPort
		}
	}
	if natsPort != pc.NATS.Port {
		t.Errorf("embedded NATS: container port %d, configuration %d", natsPort, pc.NATS.Port)
	}
	// The JetStream directory is a writable volume: a PVC with persistence, else an emptyDir.
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != pc.NATS.DataDir || m.ReadOnly {
			continue
		}
		for _, v := range proxy.pod().Volumes {
			if v.Name == m.Name && v.EmptyDir != nil && !s.persistent {
				mounted = true
			}
		}
		for _, vct := range proxy.Spec.VolumeClaimTemplates {
			if vct.Metadata.Name == m.Name && s.persistent {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("embedded NATS: %s is not a writable %s volume", pc.NATS.DataDir, map[bool]string{true: "PVC", false: "emptyDir"}[s.persistent])
	}
	// The forwarders reach it through a Service selecting the proxy pod.
	if len(fc.NATS.URLs) != 1 {
		t.Fatalf("embedded NATS: forwarder URLs %v", fc.NATS.URLs)
	}
	m := regexp.MustCompile(`^nats://([^.:]+)\.` + r.namespace + `\.svc:(\d+)$`).FindStringSubmatch(fc.NATS.URLs[0])
	if m == nil {
		t.Fatalf("embedded NATS: forwarder URL %s is not a Service of the release", fc.NATS.URLs[0])
	}
	o := r.find("Service", m[1])
	if o == nil {
		t.Fatalf("embedded NATS: the forwarder dials Service %s, which is not rendered", m[1])
	}
	var svc service
	o.decode(t, &svc)
	port, _ := strconv.Atoi(m[2])
	if !selects(svc.Spec.Selector, proxy.Spec.Template.Metadata.Labels) || len(svc.Spec.Ports) != 1 ||
		svc.Spec.Ports[0].Port != port || svc.Spec.Ports[0].TargetPort != "nats" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("embedded NATS: Service %s must select the proxy, publish not-ready addresses and map %d to its nats port: %+v", m[1], port, svc.Spec)
	}
	if s.persistent && proxy.Spec.ServiceName != m[1] {
		t.Errorf("embedded NATS: the StatefulSet's serviceName %q is not %s", proxy.Spec.ServiceName, m[1])
	}
	// Only forwarders may reach the unauthenticated server.
	nps := r.all("NetworkPolicy")
	if len(nps) != 1 {
		t.Fatalf("embedded NATS: want one NetworkPolicy, got %d", len(nps))
	}
	var np networkPolicy
	nps[0].decode(t, &np)
	natsOpenTo := 0
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == "nats" {
				if len(rule.From) == 0 {
					t.Error("embedded NATS: the NetworkPolicy opens the nats port to everyone")
				}
				for _, f := range rule.From {
					if f.PodSelector == nil || f.PodSelector.MatchLabels["app.kubernetes.io/component"] != "forwarder" {
						t.Errorf("embedded NATS: the nats port is open to %+v", f)
					}
					natsOpenTo++
				}
			}
		}
	}
	if !selects(np.Spec.PodSelector.MatchLabels, proxy.Spec.Template.Metadata.Labels) || natsOpenTo == 0 {
		t.Errorf("embedded NATS: the NetworkPolicy must select the proxy and let forwarders reach nats: %+v", np.Spec)
	}
}

// checkServices: every Service selects exactly one workload and targets ports its container names.
func checkServices(t *testing.T, r *release, ws map[string]*workloadObj) {
	t.Helper()
	for _, o := range r.all("Service") {
		var s service
		o.decode(t, &s)
		var hit []*workloadObj
		for _, w := range ws {
			if selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
				hit = append(hit, w)
			}
		}
		if len(hit) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", o.Metadata.Name, len(hit))
			continue
		}
		for _, p := range s.Spec.Ports {
			named := slices.ContainsFunc(hit[0].pod().Containers[0].Ports, func(cp containerPort) bool {
				return cp.Name == p.TargetPort
			})
			if !named {
				t.Errorf("Service %s port %s targets %q, which the pods do not name", o.Metadata.Name, p.Name, p.TargetPort)
			}
		}
	}
	if r.find("Service", r.name) == nil {
		t.Errorf("no Service named %s for the SDKs", r.name)
	}
}

func checkScaling(t *testing.T, r *release, s scenario, ws map[string]*workloadObj) {
	t.Helper()
	proxy := ws["proxy"]
	hpas := r.all("HorizontalPodAutoscaler")
	if s.embedded != (len(hpas) == 0) {
		t.Errorf("embedded=%v but %d HPAs", s.embedded, len(hpas))
	}
	for _, o := range hpas {
		var h hpa
		o.decode(t, &h)
		if h.Spec.ScaleTargetRef.Kind != proxy.obj.Kind || h.Spec.ScaleTargetRef.Name != proxy.obj.Metadata.Name {
			t.Errorf("HPA targets %+v, not the proxy", h.Spec.ScaleTargetRef)
		}
		if h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < h.Spec.MinReplicas || len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource.Name != "cpu" {
			t.Errorf("HPA spec %+v", h.Spec)
		}
		if proxy.Spec.Replicas != nil {
			t.Error("with an HPA the proxy must leave replicas to it (an upgrade would reset the scale)")
		}
	}
	covered := map[string]bool{}
	for _, o := range r.all("PodDisruptionBudget") {
		var p pdb
		o.decode(t, &p)
		if p.Spec.MinAvailable == "" && p.Spec.MaxUnavailable == "" {
			t.Errorf("PDB %s sets neither minAvailable nor maxUnavailable", o.Metadata.Name)
		}
		for comp, w := range ws {
			if selects(p.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) {
				covered[comp] = true
			}
		}
	}
	if !covered["forwarder"] || covered["proxy"] == s.embedded {
		t.Errorf("PDBs cover %v (embedded=%v: the single embedded proxy must have none)", covered, s.embedded)
	}
}

func checkIngress(t *testing.T, r *release) {
	t.Helper()
	for _, o := range r.all("Ingress") {
		var in ingress
		o.decode(t, &in)
		for _, rule := range in.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				so := r.find("Service", b.Name)
				if so == nil {
					t.Errorf("Ingress backend Service %s is not rendered", b.Name)
					continue
				}
				var s service
				so.decode(t, &s)
				if !slices.ContainsFunc(s.Spec.Ports, func(sp servicePort) bool {
					return sp.Name == b.Port.Name || sp.Port == b.Port.Number
				}) {
					t.Errorf("Ingress backend port %+v is not a port of Service %s", b.Port, b.Name)
				}
			}
		}
	}
}

func checkServiceMonitor(t *testing.T, r *release, ws map[string]*workloadObj) {
	t.Helper()
	for _, o := range r.all("ServiceMonitor") {
		var sm serviceMonitor
		o.decode(t, &sm)
		scraped := map[string]bool{}
		for _, so := range r.all("Service") {
			if !selects(sm.Spec.Selector.MatchLabels, so.Metadata.Labels) {
				continue
			}
			var s service
			so.decode(t, &s)
			for _, ep := range sm.Spec.Endpoints {
				if ep.Path != "/metrics" || !slices.ContainsFunc(s.Spec.Ports, func(sp servicePort) bool {
					return sp.Name == ep.Port && sp.TargetPort == "admin"
				}) {
					t.Errorf("ServiceMonitor endpoint %+v does not match Service %s", ep, so.Metadata.Name)
				}
			}
			for comp, w := range ws {
				if selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
					scraped[comp] = true
				}
			}
		}
		if !scraped["proxy"] || !scraped["forwarder"] || !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, r.namespace) {
			t.Errorf("ServiceMonitor scrapes %v in %v, want proxy and forwarder in %s", scraped, sm.Spec.NamespaceSelector.MatchNames, r.namespace)
		}
	}
}

// TestChartDefaultsAreProductionReady checks the defaults a plain `helm install` gets.
func TestChartDefaultsAreProductionReady(t *testing.T) {
	r := render(t)
	ws := r.workloads(t)
	var h hpa
	r.find("HorizontalPodAutoscaler", r.name+"-proxy").decode(t, &h)
	if h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 10 || h.Spec.Metrics[0].Resource.Target.Type != "Utilization" {
		t.Errorf("proxy HPA %+v, want 2–10 on CPU utilisation", h.Spec)
	}
	if f := ws["forwarder"].Spec.Replicas; f == nil || *f != 2 {
		t.Errorf("forwarder replicas %v, want 2", f)
	}
	for _, comp := range []string{"proxy", "forwarder"} {
		var p pdb
		o := r.find("PodDisruptionBudget", r.name+"-"+comp)
		if o == nil {
			t.Fatalf("no PDB for the %s", comp)
		}
		o.decode(t, &p)
		if p.Spec.MinAvailable != "1" {
			t.Errorf("%s PDB minAvailable %q, want 1", comp, p.Spec.MinAvailable)
		}
		keys := []string{}
		for _, ts := range ws[comp].pod().TopologySpreadConstraints {
			keys = append(keys, ts.TopologyKey)
		}
		if !slices.Contains(keys, "topology.kubernetes.io/zone") || !slices.Contains(keys, "kubernetes.io/hostname") {
			t.Errorf("%s spreads over %v, want zones and nodes", comp, keys)
		}
		c := ws[comp].pod().Containers[0]
		if comp == "proxy" && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0) {
			t.Error("proxy has no preStop sleep on Kubernetes " + kubeVersion)
		}
	}
	cfg, err := config.Parse([]byte(r.find("ConfigMap", r.name+"-config").Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Format != "json" || cfg.NATS.Embedded || cfg.NATS.Stream.Replicas != 3 || len(cfg.NATS.URLs) == 0 {
		t.Errorf("defaults: log %s, embedded %v, stream replicas %d, urls %v; want json logs and a 3-replica external stream",
			cfg.Log.Format, cfg.NATS.Embedded, cfg.NATS.Stream.Replicas, cfg.NATS.URLs)
	}
	// An SDK's retry must reach the replica that remembers the original (proxy.retry_dedupe).
	var svc struct {
		Spec struct {
			SessionAffinity string `yaml:"sessionAffinity"`
		} `yaml:"spec"`
	}
	r.find("Service", r.name).decode(t, &svc)
	if !cfg.Proxy.RetryDedupe.Enabled || svc.Spec.SessionAffinity != "ClientIP" {
		t.Errorf("retry de-duplication %v, Service sessionAffinity %q; want on, and ClientIP", cfg.Proxy.RetryDedupe.Enabled, svc.Spec.SessionAffinity)
	}

	// Before Kubernetes 1.30 there is no sleep hook: the chart must not render one.
	old, err := tryRender(t, "--kube-version", "1.29.0")
	if err != nil {
		t.Fatal(err)
	}
	if c := old.workloads(t)["proxy"].pod().Containers[0]; c.Lifecycle != nil {
		t.Error("a preStop sleep hook is rendered for Kubernetes 1.29")
	}
}

// TestChartSetsGoMemoryKnobs: GOMEMLIMIT follows each container's memory limit, and the proxy's
// GOGC (proxy.gcPercent) is set only beside it, where the limit bounds what a high GOGC lets grow.
func TestChartSetsGoMemoryKnobs(t *testing.T) {
	env := func(r *release, comp string) map[string]string {
		m := map[string]string{}
		for _, e := range r.workloads(t)[comp].pod().Containers[0].Env {
			m[e.Name] = e.Value
		}
		return m
	}
	tests := []struct {
		name                string
		args                []string
		proxyGOGC, proxyLim string // "" = not set
	}{
		{"defaults", nil, "400", "921MiB"},
		{"gcPercent set", []string{"--set", "proxy.gcPercent=200"}, "200", "921MiB"},
		{"gcPercent null", []string{"--set", "proxy.gcPercent=null"}, "", "921MiB"},
		{"no memory limit", []string{"--set", "proxy.resources.limits.memory=null"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			p, f := env(r, "proxy"), env(r, "forwarder")
			if p["GOGC"] != tc.proxyGOGC || p["GOMEMLIMIT"] != tc.proxyLim {
				t.Errorf("proxy GOGC %q GOMEMLIMIT %q, want %q %q", p["GOGC"], p["GOMEMLIMIT"], tc.proxyGOGC, tc.proxyLim)
			}
			// The forwarder holds up to 256 MiB of batches: a high GOGC would only fight its limit.
			if f["GOGC"] != "" || f["GOMEMLIMIT"] != "691MiB" {
				t.Errorf("forwarder GOGC %q GOMEMLIMIT %q, want none and 691MiB", f["GOGC"], f["GOMEMLIMIT"])
			}
		})
	}
}

// TestChartRollsPodsOnChange: the pod templates change exactly when the configuration or a
// chart-made Secret does.
func TestChartRollsPodsOnChange(t *testing.T) {
	prod := "ci/production-values.yaml"
	sums := func(args ...string) map[string]string {
		r := render(t, args...)
		out := map[string]string{}
		for comp, w := range r.workloads(t) {
			for _, k := range []string{"checksum/config", "checksum/secrets"} {
				out[comp+" "+k] = w.Spec.Template.Metadata.Annotations[k]
			}
		}
		return out
	}
	base := sums("-f", prod)
	tests := []struct {
		name    string
		args    []string
		changed []string // the annotations that must change; all others must not
	}{
		{"same values", nil, nil},
		{"unrelated value", []string{"--set", "proxy.podAnnotations.team=edge"}, nil},
		{"configuration", []string{"--set", "config.log.level=debug"}, []string{"checksum/config"}},
		{"NATS CA", []string{"--set", "natsAuth.tls.ca=other"}, []string{"checksum/secrets"}},
		{"secret env", []string{"--set", "secretEnv.vars.SIGEDGE_LOG_LEVEL=warn"}, []string{"checksum/secrets"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sums(append([]string{"-f", prod}, tc.args...)...)
			for k, v := range got {
				want := slices.ContainsFunc(tc.changed, func(c string) bool { return strings.HasSuffix(k, c) })
				if (v != base[k]) != want {
					t.Errorf("%s: changed=%v, want %v", k, v != base[k], want)
				}
			}
		})
	}
}

// TestChartRefusesUnsafeValues: values that would give a broken or unsafe deployment fail at
// install time with a message naming the value.
func TestChartRefusesUnsafeValues(t *testing.T) {
	tests := []struct {
		name string
		set  string
		want string // "" = must render
	}{
		{"grace covers a longer drain", "config.proxy.shutdown_timeout=1m,proxy.terminationGracePeriodSeconds=70", ""},
		{"proxy grace too short", "proxy.terminationGracePeriodSeconds=20", "proxy.terminationGracePeriodSeconds (20)"},
		{"proxy drain in minutes", "config.proxy.shutdown_timeout=1m", "at least config.proxy.shutdown_timeout (60s)"},
		{"forwarder grace too short", "forwarder.terminationGracePeriodSeconds=25", "forwarder.terminationGracePeriodSeconds (25)"},
		{"duration without unit", "config.forwarder.shutdown_timeout=25", "not a duration with a unit"},
		{"loopback listener", "config.proxy.listen=127.0.0.1:8000", "all interfaces"},
		{"one port for both", "config.proxy.admin_listen=:8000", "different ports"},
		{"no NATS servers", "config.nats.urls=null", "config.nats.urls must list"},
		{"unknown offline file", "config.rulesets.offline[0].sdk_key=secret-a,config.rulesets.offline[0].file=a.json", "not a key of offlineRuleSets.files"},
		{"relative JetStream directory", "embeddedNats.enabled=true,config.nats.data_dir=data/nats", "absolute path"},
		{"bad variable name", "secretEnv.vars.bad-name=x", "not an environment variable name"},
		{"HPA bounds", "proxy.autoscaling.minReplicas=5,proxy.autoscaling.maxReplicas=3", "minReplicas must not exceed"},
		{"GC percent not a number", "proxy.gcPercent=off", "proxy.gcPercent must be a positive whole number"},
		{"GC percent zero", "proxy.gcPercent=0", "proxy.gcPercent must be a positive whole number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tryRender(t, "--set", tc.set)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("rendered; want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestDockerfileBuildsWhatTheChartRuns ties the image to the chart: binary paths, user, ports and
// the build flags the issue asks for.
func TestDockerfileBuildsWhatTheChartRuns(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(.*)$`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 || !strings.Contains(froms[0][1], "golang:") || !regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot\b|^scratch\b`).MatchString(froms[len(froms)-1][1]) {
		t.Errorf("want a golang build stage and a distroless/static nonroot (or scratch) final stage, got %q", froms)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "./cmd/proxy ./cmd/forwarder",
		"/usr/local/bin/", "sigedge-proxy", "sigedge-forwarder"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, main := range []string{"../cmd/proxy/main.go", "../cmd/forwarder/main.go"} {
		src, err := os.ReadFile(main)
		if err != nil || !regexp.MustCompile(`(?m)^var version = `).Match(src) {
			t.Errorf("%s has no `var version` for -X main.version (%v)", main, err)
		}
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\d+)(:\d+)?\s*$`).FindStringSubmatch(df)
	r := render(t)
	p := r.workloads(t)["proxy"].pod()
	if user == nil || p.SecurityContext.RunAsUser == nil || user[1] != strconv.FormatInt(*p.SecurityContext.RunAsUser, 10) {
		t.Errorf("Dockerfile USER %v must be numeric and equal the chart's runAsUser", user)
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE\s+(.*)$`).FindStringSubmatch(df)
	d := config.Default()
	for _, addr := range []string{d.Proxy.Listen, d.Proxy.AdminListen, d.Forwarder.AdminListen} {
		if expose == nil || !slices.Contains(strings.Fields(expose[1]), strconv.Itoa(listenPort(t, addr))) {
			t.Errorf("Dockerfile EXPOSE %v lacks the default port of %s", expose, addr)
		}
	}
	// The build context must keep what go build needs.
	ign, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ign), "\n") {
		pat := strings.TrimSpace(line)
		if pat == "" || strings.HasPrefix(pat, "#") {
			continue
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "proxy", "forwarder", "queue", "configcache", "evalcore"} {
			if ok, _ := filepath.Match(pat, need); ok {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", pat, need)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("listen address %q has no port", addr)
	}
	return p
}

// quantity parses the memory quantities the chart uses (Ki/Mi/Gi/Ti, k/M/G/T, plain bytes).
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$`).FindStringSubmatch(q)
	if m == nil {
		t.Fatalf("quantity %q: not a form this test reads", q)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	mult := map[string]int64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m[2]]
	return n * mult
}

// TestNotesTellHowToPointSDKs renders templates/NOTES.txt (which helm template leaves out) through a
// copy of the chart with one more template that includes it, and checks the SDK settings it prints
// against the rendered Service.
func TestNotesTellHowToPointSDKs(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"templates", "ci"} {
		if err := os.CopyFS(filepath.Join(dir, d), os.DirFS(d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"Chart.yaml", "values.yaml"} {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	const notesTemplate = `apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ include (print .Template.BasePath "/NOTES.txt") . | toJson }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(notesTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			var args []string
			if s.values != "" {
				args = []string{"-f", filepath.Join(dir, s.values)}
			}
			r, err := tryRenderChart(t, dir, args...)
			if err != nil {
				t.Fatal(err)
			}
			cm, svcObj := r.find("ConfigMap", "notes"), r.find("Service", r.name)
			if cm == nil || svcObj == nil {
				t.Fatal("no notes or no SDK Service rendered")
			}
			notes := cm.Data["notes"]
			var svc service
			svcObj.decode(t, &svc)
			base := fmt.Sprintf("http://%s.%s.svc:%d", r.name, r.namespace, svc.Spec.Ports[0].Port)
			want := []string{
				`statsig.Options{API: "` + base + `/v1"}`,
				`{ api: "` + base + `/v1" }`,
				`specsUrl:    "` + base + `/v2/download_config_specs"`,
				`logEventUrl: "` + base + `/v1/log_event"`,
			}
			switch {
			case s.persistent:
				want = append(want, "kept on the PersistentVolumeClaim")
			case s.embedded:
				want = append(want, "LOST when the proxy pod is deleted")
			default:
				want = append(want, "Events are queued in the NATS JetStream cluster")
			}
			for _, w := range want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES.txt lacks %q:\n%s", w, notes)
				}
			}
		})
	}
}
