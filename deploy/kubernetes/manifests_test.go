// Package kubernetes holds the Kubernetes manifests of a Portcullis fleet;
// its test validates them.
package kubernetes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/policy"
)

// imageUID is the user deploy/image puts in the image.
const imageUID = 65532

// TestManifests decodes every object of portcullis.yaml strictly into its
// Kubernetes API type (an unknown or misplaced field, or a wrong type, is
// an error), then checks what ties the objects together: selectors match
// the pods, ports and probes name the container's ports, mounts name
// volumes, the pods run as the image's non-root user, and the ConfigMap's
// configuration and policy load in Portcullis.
func TestManifests(t *testing.T) {
	raw, err := os.ReadFile("portcullis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var (
		dep      *appsv1.Deployment
		services []*corev1.Service
		cm       *corev1.ConfigMap
		pdb      *policyv1.PodDisruptionBudget
		np       *networkingv1.NetworkPolicy
		sa       *corev1.ServiceAccount
	)
	for i, doc := range strings.Split(string(raw), "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "apps/v1/Deployment":
			dep = &appsv1.Deployment{}
			obj = dep
		case "v1/Service":
			s := &corev1.Service{}
			services = append(services, s)
			obj = s
		case "v1/ConfigMap":
			cm = &corev1.ConfigMap{}
			obj = cm
		case "v1/ServiceAccount":
			sa = &corev1.ServiceAccount{}
			obj = sa
		case "policy/v1/PodDisruptionBudget":
			pdb = &policyv1.PodDisruptionBudget{}
			obj = pdb
		case "networking.k8s.io/v1/NetworkPolicy":
			np = &networkingv1.NetworkPolicy{}
			obj = np
		default:
			t.Fatalf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
		}
	}
	if dep == nil || cm == nil || pdb == nil || np == nil || sa == nil || len(services) != 2 {
		t.Fatal("portcullis.yaml lacks an object")
	}

	pod := dep.Spec.Template
	podLabels := pod.Labels
	matches := func(what string, sel map[string]string) {
		t.Helper()
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry", what, k, v)
			}
		}
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
	}
	matches("the deployment", dep.Spec.Selector.MatchLabels)
	matches("the disruption budget", pdb.Spec.Selector.MatchLabels)
	matches("the network policy", np.Spec.PodSelector.MatchLabels)
	if *dep.Spec.Replicas < 3 || pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
		t.Errorf("%d replicas, %s must stay available", *dep.Spec.Replicas, pdb.Spec.MinAvailable.String())
	}
	if pod.Spec.ServiceAccountName != sa.Name {
		t.Errorf("the pods run as %q, the manifest defines %q", pod.Spec.ServiceAccountName, sa.Name)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, s := range services {
		matches("service "+s.Name, s.Spec.Selector)
		for _, p := range s.Spec.Ports {
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("service %s targets port %q, which the container does not name", s.Name, p.TargetPort.String())
			}
		}
	}
	for what, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe must GET the admin port: %+v", what, probe)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes on %s and %s", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	for _, ing := range np.Spec.Ingress {
		for _, p := range ing.Ports {
			if !slices.Contains([]int32{ports["mcp"], ports["admin"]}, int32(p.Port.IntValue())) {
				t.Errorf("network policy opens port %s, which the container does not use", p.Port.String())
			}
		}
	}

	// Security: the image's non-root user, no privilege escalation, no
	// capabilities, a read-only root, no service account token.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUID {
		t.Errorf("pod security context %+v", psc)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container security context %+v", sc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("the pods mount a service account token they do not need")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s names no volume", m.Name)
		}
		mounts[m.MountPath] = m.Name
	}

	// The configuration the pods load is valid, and mounted where the
	// container's arguments say.
	if mounts["/etc/portcullis"] != "config" || volumes["config"].ConfigMap == nil || volumes["config"].ConfigMap.Name != cm.Name {
		t.Fatalf("the configuration is not mounted from %s at /etc/portcullis", cm.Name)
	}
	if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/portcullis/portcullis.yaml"}) {
		t.Errorf("container arguments %v", c.Args)
	}
	dir := t.TempDir()
	for name, body := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "portcullis.yaml"))
	if err != nil {
		t.Fatalf("the ConfigMap's configuration: %v", err)
	}
	var paths []string
	for _, p := range cfg.Policy.Paths {
		paths = append(paths, cfg.Path(p))
	}
	srcs, err := policy.ReadSources(paths)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Compile(srcs); err != nil {
		t.Fatalf("the ConfigMap's policy: %v", err)
	}
	if cfg.Store.Postgres == nil || cfg.Store.Postgres.FromEnv == "" {
		t.Fatal("the configuration does not name the fleet's database")
	}
	found := false
	for _, e := range c.Env {
		found = found || (e.Name == cfg.Store.Postgres.FromEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
	}
	if !found {
		t.Errorf("the container does not take %s from a secret", cfg.Store.Postgres.FromEnv)
	}
	if mounts[cfg.DataDir] != "data" || mounts[filepath.Join(cfg.DataDir, "keys")] != "keys" || volumes["keys"].Secret == nil {
		t.Errorf("data directory %s and its keys (a secret) are not mounted: %v", cfg.DataDir, mounts)
	}
}
