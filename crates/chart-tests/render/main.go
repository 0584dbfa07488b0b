// Command render renders a Helm chart the way `helm template` does, for the
// chart tests of peerpull (Helm itself is not packaged where the tests run).
//
// It implements the parts of Helm's engine that charts use: text/template
// with Sprig's functions (minus env/expandenv, as in Helm) and Helm's own
// (include, tpl, required, toYaml, fromYaml, fromYamlArray, toJson, fromJson,
// lookup returning nothing as in `helm template`); .Values coalesced from the
// chart's values.yaml, -f files and --set/--set-string/--set-json; .Release,
// .Chart (Chart.yaml), .Capabilities (--kube-version, --api-versions),
// .Template and .Files. Templates are every file under templates/; files
// whose name starts with "_" only define templates, NOTES.txt is rendered but
// not printed. Output is one YAML document per object, each after a
// "---" line and a "# Source:" comment, with hooks (helm.sh/hook) last, like
// `helm template`. Documents that are empty or only comments are dropped.
//
// Build offline in GOPATH mode with Debian's packages:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render .
//
// Usage:
//
//	render [--release-name N] [--namespace NS] [--kube-version v1.30.0]
//	       [--api-versions G/V[,G/V]] [-f values.yaml]... [--set k=v]...
//	       [--set-string k=v]... [--set-json k=JSON]... CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// Helm's limit on nested include/tpl calls.
const recursionMaxNums = 1000

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Chart is .Chart: the fields of Chart.yaml, named as Helm names them.
type Chart struct {
	APIVersion   string                   `yaml:"apiVersion"`
	Name         string                   `yaml:"name"`
	Version      string                   `yaml:"version"`
	KubeVersion  string                   `yaml:"kubeVersion"`
	Description  string                   `yaml:"description"`
	Type         string                   `yaml:"type"`
	Keywords     []string                 `yaml:"keywords"`
	Home         string                   `yaml:"home"`
	Sources      []string                 `yaml:"sources"`
	Dependencies []map[string]interface{} `yaml:"dependencies"`
	Maintainers  []map[string]interface{} `yaml:"maintainers"`
	Icon         string                   `yaml:"icon"`
	AppVersion   string                   `yaml:"appVersion"`
	Deprecated   bool                     `yaml:"deprecated"`
	Annotations  map[string]string        `yaml:"annotations"`
}

// Release is .Release as `helm install` sets it.
type Release struct {
	Name      string
	Namespace string
	Revision  int
	IsInstall bool
	IsUpgrade bool
	Service   string
}

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has tells whether an API version (group/version or group/version/Kind) is available.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities is .Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files is .Files: the chart's files outside templates/.
type Files map[string][]byte

// Get returns a file's contents, or "" when there is none.
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a file's contents as bytes.
func (f Files) GetBytes(name string) []byte { return f[name] }

// Lines returns a file's lines.
func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// Glob returns the files whose names match a path.Match pattern.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

// AsConfig renders the files as a ConfigMap data block.
func (f Files) AsConfig() string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = string(data)
	}
	return toYaml(m)
}

// Builtin Kubernetes API versions `helm template` assumes (abridged to what charts test for).
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
	"networking.k8s.io/v1", "autoscaling/v2", "scheduling.k8s.io/v1",
	"storage.k8s.io/v1", "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"coordination.k8s.io/v1", "discovery.k8s.io/v1", "events.k8s.io/v1",
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var valueFiles, sets, setStrings, setJSONs multiFlag
	releaseName, namespace, kubeVersion, apiVersions := "release-name", "default", "v1.30.0", ""
	var chartDir string
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		name, inline, hasInline := strings.Cut(a, "=")
		value := func() (string, error) {
			if hasInline {
				return inline, nil
			}
			return next()
		}
		var err error
		var v string
		switch name {
		case "-f", "--values":
			v, err = value()
			valueFiles = append(valueFiles, v)
		case "--set":
			v, err = value()
			sets = append(sets, v)
		case "--set-string":
			v, err = value()
			setStrings = append(setStrings, v)
		case "--set-json":
			v, err = value()
			setJSONs = append(setJSONs, v)
		case "--release-name":
			releaseName, err = value()
		case "--namespace", "-n":
			namespace, err = value()
		case "--kube-version":
			kubeVersion, err = value()
		case "--api-versions":
			apiVersions, err = value()
		default:
			if strings.HasPrefix(a, "-") {
				return fmt.Errorf("unknown flag %s", a)
			}
			if chartDir != "" {
				return fmt.Errorf("one chart only, got %s and %s", chartDir, a)
			}
			chartDir = a
		}
		if err != nil {
			return err
		}
	}
	if chartDir == "" {
		return errors.New("usage: render [flags] CHART_DIR")
	}

	chart, err := loadChart(chartDir)
	if err != nil {
		return err
	}
	caps, err := capabilities(kubeVersion, apiVersions)
	if err != nil {
		return err
	}
	if chart.KubeVersion != "" {
		c, err := semver.NewConstraint(chart.KubeVersion)
		if err != nil {
			return fmt.Errorf("Chart.yaml kubeVersion %q: %v", chart.KubeVersion, err)
		}
		v, err := semver.NewVersion(kubeVersion)
		if err != nil {
			return fmt.Errorf("--kube-version %q: %v", kubeVersion, err)
		}
		if !c.Check(v) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", chart.KubeVersion, kubeVersion)
		}
	}
	values, err := loadValues(filepath.Join(chartDir, "values.yaml"), valueFiles, sets, setStrings, setJSONs)
	if err != nil {
		return err
	}
	files, templates, err := loadFiles(chartDir, chart.Name)
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values":       values,
		"Chart":        chart,
		"Release":      Release{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true, Service: "Helm"},
		"Capabilities": caps,
		"Files":        files,
	}
	rendered, err := renderAll(templates, top, chart.Name)
	if err != nil {
		return err
	}
	return printManifests(rendered)
}

func loadChart(dir string) (*Chart, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var c Chart
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if c.APIVersion != "v2" {
		return nil, fmt.Errorf("Chart.yaml: apiVersion %q, want v2", c.APIVersion)
	}
	if c.Name == "" || c.Version == "" {
		return nil, errors.New("Chart.yaml: name and version are required")
	}
	if _, err := semver.NewVersion(c.Version); err != nil {
		return nil, fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", c.Version, err)
	}
	return &c, nil
}

func capabilities(kubeVersion, apiVersions string) (Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return Capabilities{}, fmt.Errorf("--kube-version %q: %v", kubeVersion, err)
	}
	versions := append(VersionSet{}, defaultAPIVersions...)
	for _, a := range strings.Split(apiVersions, ",") {
		if a = strings.TrimSpace(a); a != "" {
			versions = append(versions, a)
		}
	}
	return Capabilities{
		KubeVersion: KubeVersion{
			Version:    "v" + v.String(),
			Major:      strconv.FormatUint(v.Major(), 10),
			Minor:      strconv.FormatUint(v.Minor(), 10),
			GitVersion: "v" + v.String(),
		},
		APIVersions: versions,
		HelmVersion: map[string]string{"Version": "v3.16.0"},
	}, nil
}

// loadFiles reads every chart file: templates/ into templates (keyed by
// "<chart>/templates/..."), everything else into .Files.
func loadFiles(dir, chartName string) (Files, map[string]string, error) {
	files := Files{}
	templates := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[chartName+"/"+rel] = string(data)
		} else if rel != "Chart.yaml" && rel != "values.yaml" {
			files[rel] = data
		}
		return nil
	})
	return files, templates, err
}

// renderAll parses all templates into one set (so every define is visible
// everywhere) and executes each renderable one.
func renderAll(templates map[string]string, top map[string]interface{}, chartName string) (map[string]string, error) {
	t := template.New("gotpl")
	// Helm leaves missing keys as zero values and prints "<no value>" as "".
	t.Option("missingkey=zero")
	includedNames := map[string]int{}
	funcs := funcMap()
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		clone.Option("missingkey=zero")
		tt, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf bytes.Buffer
		if err := tt.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error calling tpl: %v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	t.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := t.New(name).Parse(templates[name]); err != nil {
			return nil, fmt.Errorf("parse error in %q: %v", name, err)
		}
	}
	out := map[string]string{}
	for _, name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]string{"Name": name, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return nil, fmt.Errorf("render error in %q: %v", name, err)
		}
		if base == "NOTES.txt" {
			continue
		}
		out[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYaml
	f["fromYaml"] = fromYaml
	f["fromYamlArray"] = fromYamlArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	// `helm template` has no cluster: lookup finds nothing.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// toYaml marshals like Helm's (sigs.k8s.io/yaml): sorted keys, two-space
// indentation, no trailing newline; errors give "".
func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(jsonShape(v)); err != nil {
		return ""
	}
	_ = enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

// jsonShape passes a value through JSON as sigs.k8s.io/yaml does, so
// structs and odd map types come out as plain maps.
func jsonShape(v interface{}) interface{} {
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out interface{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return v
	}
	return numbers(out)
}

// numbers turns json.Number into int64 or float64 so YAML prints them bare.
func numbers(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = numbers(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = numbers(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

func fromYaml(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYamlArray(s string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// loadValues coalesces the chart's values with the user's, as Helm does:
// maps merge deeply, anything else replaces, and a null deletes the key.
func loadValues(chartValues string, files, sets, setStrings, setJSONs []string) (map[string]interface{}, error) {
	base, err := readValuesFile(chartValues)
	if err != nil {
		return nil, err
	}
	user := map[string]interface{}{}
	for _, f := range files {
		v, err := readValuesFile(f)
		if err != nil {
			return nil, err
		}
		user = merge(user, v)
	}
	for _, s := range setJSONs {
		key, raw, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set-json %q: want key=JSON", s)
		}
		var v interface{}
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, fmt.Errorf("--set-json %q: %v", s, err)
		}
		if err := setPath(user, key, v); err != nil {
			return nil, err
		}
	}
	for _, s := range sets {
		for _, kv := range splitSet(s) {
			key, raw, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("--set %q: want key=value", kv)
			}
			if err := setPath(user, key, typedValue(raw)); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range setStrings {
		for _, kv := range splitSet(s) {
			key, raw, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("--set-string %q: want key=value", kv)
			}
			if err := setPath(user, key, raw); err != nil {
				return nil, err
			}
		}
	}
	return coalesce(user, base), nil
}

// readValuesFile reads YAML values the way Helm does, through JSON, so
// numbers are float64 in templates exactly as under Helm.
func readValuesFile(name string) (map[string]interface{}, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var raw map[string]interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if raw == nil {
		raw = map[string]interface{}{}
	}
	js, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	out := map[string]interface{}{}
	if err := json.Unmarshal(js, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return out, nil
}

// merge puts src over dst (both user values; nulls are kept for coalesce).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// coalesce lays user values over the chart's defaults; a user null removes
// the default.
func coalesce(user, base map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uok := v.(map[string]interface{})
		bm, bok := out[k].(map[string]interface{})
		if uok && bok {
			out[k] = coalesce(um, bm)
		} else if uok {
			out[k] = coalesce(um, map[string]interface{}{})
		} else {
			out[k] = v
		}
	}
	return out
}

// splitSet splits "a=1,b=2" on commas outside braces and not escaped.
func splitSet(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

var intRe = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)

// typedValue types a --set value as Helm's strvals does.
func typedValue(raw string) interface{} {
	switch {
	case raw == "true":
		return true
	case raw == "false":
		return false
	case raw == "null":
		return nil
	case intRe.MatchString(raw):
		if i, err := strconv.ParseInt(raw, 10, 64); err == nil {
			return i
		}
	case strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}"):
		inner := raw[1 : len(raw)-1]
		list := []interface{}{}
		if inner != "" {
			for _, e := range splitSet(inner) {
				list = append(list, typedValue(strings.ReplaceAll(e, `\,`, ",")))
			}
		}
		return list
	}
	return strings.ReplaceAll(raw, `\,`, ",")
}

var indexRe = regexp.MustCompile(`^(.*)\[([0-9]+)\]$`)

// setPath sets a dotted key (with "\." escapes and name[i] indexes).
func setPath(m map[string]interface{}, key string, v interface{}) error {
	parts := splitKey(key)
	cur := m
	for i, p := range parts {
		last := i == len(parts)-1
		if sub := indexRe.FindStringSubmatch(p); sub != nil {
			idx, _ := strconv.Atoi(sub[2])
			list, _ := cur[sub[1]].([]interface{})
			for len(list) <= idx {
				list = append(list, nil)
			}
			if last {
				list[idx] = v
				cur[sub[1]] = list
				return nil
			}
			next, ok := list[idx].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				list[idx] = next
			}
			cur[sub[1]] = list
			cur = next
			continue
		}
		if last {
			cur[p] = v
			return nil
		}
		next, ok := cur[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			cur[p] = next
		}
		cur = next
	}
	return fmt.Errorf("empty key in %q", key)
}

func splitKey(key string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		if key[i] == '\\' && i+1 < len(key) && key[i+1] == '.' {
			cur.WriteByte('.')
			i++
			continue
		}
		if key[i] == '.' {
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(key[i])
	}
	return append(parts, cur.String())
}

var sepRe = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

type manifest struct {
	source string
	body   string
	hook   bool
}

// printManifests splits each template's output into documents and prints
// them, hooks last, after checking each is one YAML mapping with a kind.
func printManifests(rendered map[string]string) error {
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	var plain, hooks []manifest
	for _, name := range names {
		for _, doc := range sepRe.Split(rendered[name], -1) {
			if onlyComments(doc) {
				continue
			}
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name        string            `yaml:"name"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return fmt.Errorf("%s: YAML parse error: %v\n%s", name, err, doc)
			}
			if head.Kind == "" || head.APIVersion == "" {
				return fmt.Errorf("%s: a document without apiVersion or kind:\n%s", name, doc)
			}
			m := manifest{source: name, body: strings.Trim(doc, "\n")}
			if _, ok := head.Metadata.Annotations["helm.sh/hook"]; ok {
				m.hook = true
				hooks = append(hooks, m)
			} else {
				plain = append(plain, m)
			}
		}
	}
	var out strings.Builder
	for _, m := range append(plain, hooks...) {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.body)
	}
	_, err := os.Stdout.WriteString(out.String())
	return err
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
