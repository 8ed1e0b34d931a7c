package observe

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseQueryResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want Result
		err  error
	}{
		{
			name: "vector, rows sorted by labels",
			raw: `{"status":"success","data":{"resultType":"vector","result":[
				{"metric":{"__name__":"up","cluster":"eu-west","job":"kubelet"},"value":[1764800000,"1"]},
				{"metric":{"__name__":"up","cluster":"ap-south","job":"kubelet"},"value":[1764800000.5,"0"]}]}}`,
			want: Result{Columns: []string{"NAME", "cluster", "job", "VALUE", "TIME"}, Rows: [][]string{
				{"up", "ap-south", "kubelet", "0", "2025-12-03T22:13:20Z"},
				{"up", "eu-west", "kubelet", "1", "2025-12-03T22:13:20Z"},
			}},
		},
		{
			name: "an aggregation has no metric name",
			raw:  `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"cluster":"us-east"},"value":[1764800000,"12.5"]}]}}`,
			want: Result{Columns: []string{"cluster", "VALUE", "TIME"}, Rows: [][]string{{"us-east", "12.5", "2025-12-03T22:13:20Z"}}},
		},
		{
			name: "an empty vector",
			raw:  `{"status":"success","data":{"resultType":"vector","result":[]}}`,
			want: Result{Columns: []string{"VALUE", "TIME"}},
		},
		{
			name: "matrix: the latest sample and the count",
			raw: `{"status":"success","data":{"resultType":"matrix","result":[
				{"metric":{"__name__":"x"},"values":[[1764800000,"1"],[1764800015,"2"]]}]}}`,
			want: Result{Columns: []string{"NAME", "VALUE", "TIME", "SAMPLES"}, Rows: [][]string{{"x", "2", "2025-12-03T22:13:35Z", "2"}}},
		},
		{
			name: "scalar",
			raw:  `{"status":"success","data":{"resultType":"scalar","result":[1764800000,"3"]}}`,
			want: Result{Columns: []string{"VALUE", "TIME"}, Rows: [][]string{{"3", "2025-12-03T22:13:20Z"}}},
		},
		{
			name: "the store's refusal keeps its message",
			raw:  `{"status":"error","errorType":"422","error":"cannot parse \"sum(\": unexpected end of stream"}`,
			err:  ErrStore,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseQueryResult([]byte(tc.raw))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		value     float64
		empty     bool
		err       string
	}{
		{"scalar", `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.25"]}}`, 0.25, false, ""},
		{"one series", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"cluster":"a"},"value":[1700000000,"3"]}]}}`, 3, false, ""},
		{"NaN is no data", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}`, 0, true, ""},
		{"no series", `{"status":"success","data":{"resultType":"vector","result":[]}}`, 0, true, ""},
		{"two series", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"cluster":"a"},"value":[1,"1"]},{"metric":{"cluster":"b"},"value":[1,"2"]}]}}`, 0, false, "returns 2 series, not one number: aggregate them"},
		{"matrix", `{"status":"success","data":{"resultType":"matrix","result":[]}}`, 0, false, "a matrix, not one number"},
		{"refused", `{"status":"error","errorType":"422","error":"cannot parse \"rate(\""}`, 0, false, "refused the query: 422: cannot parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, empty, err := ParseNumber([]byte(tc.raw))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseNumber error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil || v != tc.value || empty != tc.empty {
				t.Fatalf("ParseNumber = %v, %v, %v; want %v, %v", v, empty, err, tc.value, tc.empty)
			}
		})
	}
}
