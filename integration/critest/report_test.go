package critest

import (
	"reflect"
	"strings"
	"testing"
)

// junit writes a ginkgo-style JUnit report of specs given as name=status.
func junit(specs ...string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3"><testsuite name="CRI validation" package="/x">
<testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
`)
	for _, s := range specs {
		name, status, _ := strings.Cut(s, "=")
		b.WriteString(`<testcase name="[It] ` + name + `" classname="CRI validation" status="` + status + `" time="1.5">`)
		switch status {
		case Failed:
			b.WriteString(`<failure message="expected 0&#xA;got 1" type="failed">stack</failure>`)
		case Skipped:
			b.WriteString(`<skipped message="skipped - not supported"></skipped>`)
		}
		b.WriteString("</testcase>\n")
	}
	b.WriteString("</testsuite></testsuites>\n")
	return []byte(b.String())
}

func mustParse(t *testing.T, data []byte) Report {
	t.Helper()
	r, err := ParseReport(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseReport(t *testing.T) {
	r := mustParse(t, junit("[sig] a should pass=passed", "[sig] b should fail=failed", "[sig] c=skipped"))
	want := Report{
		"[sig] a should pass": {Name: "[sig] a should pass", Status: Passed, Seconds: 1.5},
		"[sig] b should fail": {Name: "[sig] b should fail", Status: Failed, Message: "expected 0\ngot 1", Seconds: 1.5},
		"[sig] c":             {Name: "[sig] c", Status: Skipped, Message: "skipped - not supported", Seconds: 1.5},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if got, want := r.TallyString(), "3 specs: 1 passed, 1 failed, 1 skipped"; got != want {
		t.Errorf("tally %q, want %q", got, want)
	}
	if _, err := ParseReport(junit()); err == nil {
		t.Error("a report without specs parsed without error")
	}
	if _, err := ParseReport([]byte("<testsuites><testsuite>")); err == nil {
		t.Error("a truncated report parsed without error")
	}
}

func TestCompare(t *testing.T) {
	ref := mustParse(t, junit(
		"same=passed", "regressed=passed", "skippedlater=failed", "bothfail=failed",
		"excused host net=passed", "excused but passes=passed", "better=failed", "bothskip=skipped", "gone=passed",
	))
	got := mustParse(t, junit(
		"same=passed", "regressed=failed", "skippedlater=skipped", "bothfail=failed",
		"excused host net=failed", "excused but passes=passed", "better=passed", "bothskip=skipped",
	))
	exceptions := []Exception{{Spec: "host net", Reason: "a VM"}, {Spec: "but passes", Reason: "why"}}
	c := Compare(ref, got, exceptions)
	want := Comparison{
		Regressions: []string{
			"gone: passed under the reference, missing",
			"regressed: passed under the reference, failed: expected 0",
			"skippedlater: failed under the reference, skipped: skipped - not supported",
		},
		Excused: []string{"excused host net: failed (a VM)"},
		Passing: []string{"excused but passes"},
		Better:  []string{"better"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%#v\nwant\n%#v", c, want)
	}
}
