//go:build go1.21

package sidelog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Level is the lowest level handled: slog.LevelInfo when nil.
	Level slog.Leveler
}

// Handler is a log/slog Handler that sends every record to sidelog through a Client, as one JSON entry with
// "time" (epoch milliseconds, which sidelog reads as the entry's timestamp), "level" ("debug", "info", "warn",
// "error"), "message", and the record's attributes; groups become nested objects.
type Handler struct {
	client *Client
	level  slog.Leveler
	// preset holds the attributes given to WithAttrs, already placed under their groups.
	preset map[string]any
	// groups are the groups opened by WithGroup: the record's own attributes go under them.
	groups []string
}

// NewHandler returns a Handler that sends to c. Close c when the application ends.
func NewHandler(c *Client, opts *HandlerOptions) *Handler {
	h := &Handler{client: c, level: slog.LevelInfo, preset: map[string]any{}}
	if opts != nil && opts.Level != nil {
		h.level = opts.Level
	}
	return h
}

// Enabled reports whether records at level are handled.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// Handle queues the record. It never blocks on the network; an entry the queue cannot take is counted as dropped.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	entry := clone(h.preset)
	attrs := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(attrs, a)
		return true
	})
	if len(attrs) > 0 {
		merge(target(entry, h.groups), attrs)
	}
	entry["message"] = r.Message
	entry["level"] = strings.ToLower(r.Level.String())
	if !r.Time.IsZero() {
		entry["time"] = r.Time.UnixMilli()
	}
	line, err := json.Marshal(entry)
	if err != nil {
		// A value JSON cannot hold (a channel, a NaN): its text stands in for it rather than losing the record.
		line, _ = json.Marshal(map[string]any{
			"message": r.Message, "level": entry["level"], "time": entry["time"],
			"encoding_error": err.Error(), "attributes": fmt.Sprintf("%+v", entry),
		})
	}
	h.client.Send(line)
	return nil
}

// WithAttrs returns a Handler that adds attrs to every record, under the groups open now.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	next := *h
	next.preset = clone(h.preset)
	added := map[string]any{}
	for _, a := range attrs {
		addAttr(added, a)
	}
	if len(added) > 0 {
		merge(target(next.preset, h.groups), added)
	}
	return &next
}

// WithGroup returns a Handler that puts the attributes that follow under name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	next := *h
	next.groups = append(append([]string(nil), h.groups...), name)
	return &next
}

// addAttr puts one attribute into m, by slog's rules: an empty attribute is ignored, an empty group too, and a
// group without a key is inlined.
func addAttr(m map[string]any, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		sub := map[string]any{}
		for _, member := range a.Value.Group() {
			addAttr(sub, member)
		}
		if len(sub) == 0 {
			return
		}
		if a.Key == "" {
			merge(m, sub)
			return
		}
		if existing, ok := m[a.Key].(map[string]any); ok {
			merge(existing, sub)
			return
		}
		m[a.Key] = sub
		return
	}
	m[a.Key] = valueOf(a.Value)
}

func valueOf(v slog.Value) any {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case json.Marshaler:
			return x
		case error:
			return x.Error()
		case fmt.Stringer:
			return x.String()
		default:
			return x
		}
	default:
		return v.Any()
	}
}

// target is the map under the given groups, created as needed.
func target(m map[string]any, groups []string) map[string]any {
	for _, g := range groups {
		sub, ok := m[g].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[g] = sub
		}
		m = sub
	}
	return m
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if existing, ok := dst[k].(map[string]any); ok {
				merge(existing, sub)
				continue
			}
			v = clone(sub)
		}
		dst[k] = v
	}
}

// clone copies the nested maps, so that a Handler never changes one another Handler shares.
func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = clone(sub)
		}
		out[k] = v
	}
	return out
}
