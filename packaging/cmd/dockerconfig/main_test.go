package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRegisterKeepsOtherKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "daemon.json")
	orig := `{"log-driver":"json-file","runtimes":{"other":{"path":"/bin/other"}},"debug":true}`
	if err := os.WriteFile(file, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := run(file, "cocoon", "/usr/local/bin/cocoon-runtime", []string{"--config", "/c.toml"}, true); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]any
	data, _ := os.ReadFile(file)
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"log-driver": "json-file",
		"debug":      true,
		"runtimes": map[string]any{
			"other":  map[string]any{"path": "/bin/other"},
			"cocoon": map[string]any{"path": "/usr/local/bin/cocoon-runtime", "runtimeArgs": []any{"--config", "/c.toml"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after register: %s", data)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	for i := 0; i < 2; i++ {
		if err := run(file, "cocoon", "", nil, false); err != nil {
			t.Fatal(err)
		}
	}
	data, _ = os.ReadFile(file)
	got = nil
	json.Unmarshal(data, &got)
	delete(want["runtimes"].(map[string]any), "cocoon")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after unregister: %s", data)
	}
}

func TestRegisterCreatesAndUnregisterEmpties(t *testing.T) {
	file := filepath.Join(t.TempDir(), "docker", "daemon.json")
	if err := run(file, "cocoon", "/usr/local/bin/cocoon-runtime", nil, true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	if string(data) != "{\n\t\"runtimes\": {\n\t\t\"cocoon\": {\n\t\t\t\"path\": \"/usr/local/bin/cocoon-runtime\"\n\t\t}\n\t}\n}\n" {
		t.Fatalf("created: %q", data)
	}
	if err := run(file, "cocoon", "", nil, false); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(file); string(data) != "{}\n" {
		t.Fatalf("after unregister: %q", data)
	}
}
