// Package critest runs the CRI validation suite (critest, from
// sigs.k8s.io/cri-tools) against a private containerd, once with the runc
// handler and once with cocoon's, and compares them: runc's results on the
// same machine are the reference. This file reads the suite's JUnit
// reports; images.go builds the suite's images and serves them from a
// registry of the test's own.
package critest

import (
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Spec states as ginkgo writes them in a JUnit report's status attribute.
const (
	Passed  = "passed"
	Failed  = "failed"
	Skipped = "skipped"
	Pending = "pending"
)

// Result is one spec's result.
type Result struct {
	// Name is the spec's full text, without ginkgo's "[It] " prefix.
	Name string
	// Status is the spec's state: Passed, Failed, Skipped, Pending, or
	// panicked, interrupted, timedout, aborted.
	Status string
	// Message is why it failed or was skipped.
	Message string
	// Seconds is how long it ran.
	Seconds float64
}

// Report is a suite run's results, by spec name.
type Report map[string]Result

// junitSuites is the part of ginkgo's JUnit report that ReadReport reads.
type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string  `xml:"name,attr"`
			Status  string  `xml:"status,attr"`
			Time    float64 `xml:"time,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ReadReport reads the specs of a ginkgo JUnit report (critest's
// -ginkgo.junit-report); the suite's setup and teardown nodes
// ([BeforeSuite] and the like) are left out.
func ReadReport(path string) (Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the suite's report: %w", err)
	}
	return ParseReport(data)
}

// ParseReport is ReadReport on the report's content.
func ParseReport(data []byte) (Report, error) {
	var s junitSuites
	if err := xml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parsing the suite's JUnit report: %w", err)
	}
	r := Report{}
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			name, ok := strings.CutPrefix(c.Name, "[It] ")
			if !ok {
				continue
			}
			res := Result{Name: name, Status: c.Status, Seconds: c.Time}
			switch {
			case c.Failure != nil:
				res.Message = c.Failure.Message
			case c.Error != nil:
				res.Message = c.Error.Message
			case c.Skipped != nil:
				res.Message = c.Skipped.Message
			}
			r[name] = res
		}
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("the suite's JUnit report names no spec")
	}
	return r, nil
}

// Tally counts a report's specs by state.
func (r Report) Tally() map[string]int {
	t := map[string]int{}
	for _, res := range r {
		t[res.Status]++
	}
	return t
}

// TallyString is the tally in one line: "128 specs: 110 passed, 9 failed,
// 9 skipped".
func (r Report) TallyString() string {
	t := r.Tally()
	states := make([]string, 0, len(t))
	for s := range t {
		states = append(states, s)
	}
	// passed, failed, skipped first, then the rarer states by name.
	order := map[string]int{Passed: 0, Failed: 1, Skipped: 2}
	sort.Slice(states, func(i, j int) bool {
		oi, iok := order[states[i]]
		oj, jok := order[states[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return states[i] < states[j]
	})
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%d %s", t[s], s)
	}
	return fmt.Sprintf("%d specs: %s", len(r), strings.Join(parts, ", "))
}

// Names returns the names of the report's specs in state status, sorted.
func (r Report) Names(status string) []string {
	var names []string
	for name, res := range r {
		if res.Status == status {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Exception is a spec that passes under runc and fails under cocoon by
// design.
type Exception struct {
	// Spec is the end of the spec's name (its It text).
	Spec string
	// Reason says why cocoon cannot pass it.
	Reason string
}

// Comparison is the result of Compare.
type Comparison struct {
	// Regressions are the specs that passed under the reference and did
	// not pass under the runtime (or that the reference ran and the
	// runtime skipped), and are no exception: the test fails on them.
	Regressions []string
	// Excused are the exceptions' specs that did not pass under the
	// runtime, with the reason.
	Excused []string
	// Passing are the exceptions' specs that passed under the runtime
	// after all.
	Passing []string
	// Better are the specs that failed under the reference and passed
	// under the runtime.
	Better []string
}

// Compare compares got (cocoon's run) with ref (runc's): every spec that
// passed in ref must pass in got, and none that ref ran (passed or
// failed) may be skipped or missing in got, but for the exceptions.
func Compare(ref, got Report, exceptions []Exception) Comparison {
	var c Comparison
	names := make([]string, 0, len(ref))
	for name := range ref {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := ref[name]
		g, ok := got[name]
		var exc *Exception
		for i := range exceptions {
			if strings.HasSuffix(name, exceptions[i].Spec) {
				exc = &exceptions[i]
			}
		}
		ran := r.Status != Skipped && r.Status != Pending
		switch {
		case !ok && ran:
			c.Regressions = append(c.Regressions, fmt.Sprintf("%s: %s under the reference, missing", name, r.Status))
		case !ok:
		case r.Status == Passed && g.Status == Passed && exc != nil:
			c.Passing = append(c.Passing, name)
		case r.Status == Passed && g.Status != Passed && exc != nil:
			c.Excused = append(c.Excused, fmt.Sprintf("%s: %s (%s)", name, g.Status, exc.Reason))
		case r.Status == Passed && g.Status != Passed,
			ran && (g.Status == Skipped || g.Status == Pending):
			c.Regressions = append(c.Regressions, fmt.Sprintf("%s: %s under the reference, %s: %s", name, r.Status, g.Status, firstLine(g.Message)))
		case r.Status != Passed && g.Status == Passed:
			c.Better = append(c.Better, name)
		}
	}
	return c
}

// firstLine is the first non-empty line of s, at most 300 bytes.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if len(l) > 300 {
				l = l[:300] + "..."
			}
			return l
		}
	}
	return ""
}
