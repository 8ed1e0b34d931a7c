package observe

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// ErrStore is a query the store refused (invalid PromQL, a limit exceeded): its message is
// the store's own.
var ErrStore = errors.New("the metrics store refused the query")

// Result is the answer of the Prometheus query API's /api/v1/query, as a table: one row per
// series, a column per label (metric name first), then the value and its time. A matrix (a
// range selector) shows each series' latest sample and how many there were.
type Result struct {
	Columns []string
	Rows    [][]string
}

// answer is a query API answer, its result still raw.
type answer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// decodeAnswer reads a query API answer; a refusal wraps ErrStore with the store's message.
func decodeAnswer(raw []byte) (answer, error) {
	var resp answer
	if err := json.Unmarshal(raw, &resp); err != nil {
		return resp, fmt.Errorf("read the store's answer: %w", err)
	}
	if resp.Status != "success" {
		return resp, fmt.Errorf("%w: %s: %s", ErrStore, resp.ErrorType, resp.Error)
	}
	return resp, nil
}

// ParseQueryResult reads a /api/v1/query answer. A refusal wraps ErrStore with the store's
// message (its errorType and error).
func ParseQueryResult(raw []byte) (Result, error) {
	resp, err := decodeAnswer(raw)
	if err != nil {
		return Result{}, err
	}
	type series struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
		Values [][]any           `json:"values"`
	}
	switch resp.Data.ResultType {
	case "scalar", "string":
		var sample []any
		if err := json.Unmarshal(resp.Data.Result, &sample); err != nil {
			return Result{}, fmt.Errorf("read the store's answer: %w", err)
		}
		v, at := sample2(sample)
		return Result{Columns: []string{"VALUE", "TIME"}, Rows: [][]string{{v, at}}}, nil
	case "vector", "matrix":
		var all []series
		if err := json.Unmarshal(resp.Data.Result, &all); err != nil {
			return Result{}, fmt.Errorf("read the store's answer: %w", err)
		}
		labels := map[string]bool{}
		for _, s := range all {
			for k := range s.Metric {
				labels[k] = true
			}
		}
		delete(labels, "__name__")
		names := make([]string, 0, len(labels))
		for k := range labels {
			names = append(names, k)
		}
		sort.Strings(names)
		hasName := slices.ContainsFunc(all, func(s series) bool { return s.Metric["__name__"] != "" })
		var r Result
		if hasName {
			r.Columns = append(r.Columns, "NAME")
		}
		for _, n := range names {
			r.Columns = append(r.Columns, n)
		}
		r.Columns = append(r.Columns, "VALUE", "TIME")
		if resp.Data.ResultType == "matrix" {
			r.Columns = append(r.Columns, "SAMPLES")
		}
		for _, s := range all {
			var row []string
			if hasName {
				row = append(row, s.Metric["__name__"])
			}
			for _, n := range names {
				row = append(row, s.Metric[n])
			}
			if resp.Data.ResultType == "matrix" {
				var last []any
				if len(s.Values) > 0 {
					last = s.Values[len(s.Values)-1]
				}
				v, at := sample2(last)
				row = append(row, v, at, strconv.Itoa(len(s.Values)))
			} else {
				v, at := sample2(s.Value)
				row = append(row, v, at)
			}
			r.Rows = append(r.Rows, row)
		}
		// Rows in the order of their labels, so that the same query prints the same table.
		sort.SliceStable(r.Rows, func(i, j int) bool { return slices.Compare(r.Rows[i], r.Rows[j]) < 0 })
		return r, nil
	default:
		return Result{}, fmt.Errorf("read the store's answer: unknown result type %q", resp.Data.ResultType)
	}
}

// sample2 is a sample's value and time ([unix seconds, "value"]).
func sample2(s []any) (value, at string) {
	if len(s) != 2 {
		return "", ""
	}
	if v, ok := s[1].(string); ok {
		value = v
	}
	if ts, ok := s[0].(float64); ok {
		sec := int64(ts)
		at = time.Unix(sec, int64((ts-float64(sec))*1e9)).UTC().Format(time.RFC3339)
	}
	return value, at
}

// Sample is one series of an instant vector: its labels and value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// ParseVector reads a /api/v1/query answer that is an instant vector. A refusal wraps
// ErrStore, as ParseQueryResult does.
func ParseVector(raw []byte) ([]Sample, error) {
	var resp struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("read the store's answer: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("%w: %s: %s", ErrStore, resp.ErrorType, resp.Error)
	}
	if resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("read the store's answer: a %s, not a vector", resp.Data.ResultType)
	}
	out := make([]Sample, 0, len(resp.Data.Result))
	for _, s := range resp.Data.Result {
		v, _ := sample2(s.Value)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("read the store's answer: value %q: %w", v, err)
		}
		out = append(out, Sample{Labels: s.Metric, Value: f})
	}
	return out, nil
}

// ParseNumber reads a /api/v1/query answer that must be one number, as a rollout's metric gate
// needs: a scalar, or a vector of one series. empty is true when the vector has none, or its
// value is NaN (a ratio of nothing); a vector of several is an error that says how to make it
// one. A refusal wraps ErrStore.
func ParseNumber(raw []byte) (value float64, empty bool, err error) {
	resp, err := decodeAnswer(raw)
	if err != nil {
		return 0, false, err
	}
	var sample []any
	switch resp.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(resp.Data.Result, &sample); err != nil {
			return 0, false, fmt.Errorf("read the store's answer: %w", err)
		}
	case "vector":
		var all []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(resp.Data.Result, &all); err != nil {
			return 0, false, fmt.Errorf("read the store's answer: %w", err)
		}
		switch len(all) {
		case 0:
			return 0, true, nil
		case 1:
			sample = all[0].Value
		default:
			return 0, false, fmt.Errorf("the query returns %d series, not one number: aggregate them (sum, max or avg)", len(all))
		}
	default:
		return 0, false, fmt.Errorf("the query returns a %s, not one number", resp.Data.ResultType)
	}
	v, _ := sample2(sample)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, false, fmt.Errorf("read the store's answer: value %q: %w", v, err)
	}
	if math.IsNaN(f) {
		return 0, true, nil // 0/0: no requests to take a ratio of
	}
	return f, false, nil
}
