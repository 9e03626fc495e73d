package agent

import (
	"fmt"
	"os"
	"strings"

	"github.com/cocoon-containers/cocoon/api"
)

// KernelParams are the parameters of the guest kernel command line, by name.
// A parameter given without "=value" maps to "". Names are normalised the way
// the kernel compares them: '-' and '_' are the same character.
type KernelParams map[string]string

// ParseKernelParams parses a kernel command line (the contents of
// /proc/cmdline). Double quotes group words, as the kernel's own parser does:
// `a="b c"` and `"a=b c"` both give a = "b c". Parsing stops at "--": what
// follows belongs to init, not to the kernel. A repeated name keeps its last value.
func ParseKernelParams(cmdline string) KernelParams {
	params := KernelParams{}
	for _, word := range splitCmdline(cmdline) {
		if word == "--" {
			break
		}
		name, value, _ := strings.Cut(word, "=")
		if name == "" {
			continue
		}
		params[normaliseParam(name)] = value
	}
	return params
}

// ReadKernelParams reads and parses a kernel command line file, normally
// /proc/cmdline.
func ReadKernelParams(path string) (KernelParams, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading kernel command line: %w", err)
	}
	return ParseKernelParams(string(b)), nil
}

// Get returns the value of the named parameter and whether it was given.
func (p KernelParams) Get(name string) (string, bool) {
	v, ok := p[normaliseParam(name)]
	return v, ok
}

func normaliseParam(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// splitCmdline splits on unquoted white space and drops the quotes.
func splitCmdline(s string) []string {
	var (
		words   []string
		cur     strings.Builder
		inQuote bool
		inWord  bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// LogLevel returns the agent's log level that the host set on the kernel
// command line (api.KernelParamLogLevel), if any.
func (p KernelParams) LogLevel() (string, bool) {
	return p.Get(api.KernelParamLogLevel)
}
