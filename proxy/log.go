package proxy

import (
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
)

// yamuxLogger sends yamux's messages ("[ERR] yamux: ...") to logrus at the
// level their prefix names.
type yamuxLogger struct {
	log *logrus.Entry
}

func (l yamuxLogger) Print(v ...any)                 { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.emit(fmt.Sprintf(format, v...)) }
func (l yamuxLogger) Println(v ...any)               { l.emit(fmt.Sprintln(v...)) }

func (l yamuxLogger) emit(msg string) {
	msg = strings.TrimRight(msg, "\n")
	level := logrus.DebugLevel
	for _, p := range []struct {
		prefix string
		level  logrus.Level
	}{{"[ERR]", logrus.ErrorLevel}, {"[WARN]", logrus.WarnLevel}, {"[INFO]", logrus.InfoLevel}, {"[DEBUG]", logrus.DebugLevel}} {
		if rest, ok := strings.CutPrefix(msg, p.prefix); ok {
			level, msg = p.level, strings.TrimSpace(rest)
			break
		}
	}
	l.log.Log(level, msg)
}
