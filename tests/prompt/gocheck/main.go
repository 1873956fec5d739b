// Command gocheck executes Go templates with Go's own text/template, for differential tests of
// llmcrate's interpreter (tests/prompt/test_go_differential.py). It reads JSON lines
// {"t": template, "d": data} or {"t", "messages", "tools"} (/api/chat JSON, turned into
// Ollama-shaped values by ollama.go) and writes {"out", "perr" (parse error), "xerr" (exec error)};
// options as Ollama's: missingkey=zero and a "json" function. JSON numbers without a fraction
// or exponent become int, others float64, so the data matches the Python side's types.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type req struct {
	T        string          `json:"t"`
	D        json.RawMessage `json:"d"`
	Messages json.RawMessage `json:"messages"` // with tools: render Ollama-shaped values instead of d
	Tools    json.RawMessage `json:"tools"`
}

func conv(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			f, _ := x.Float64()
			return f
		}
		i, _ := x.Int64()
		return int(i)
	case map[string]any:
		for k, e := range x {
			x[k] = conv(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = conv(e)
		}
		return x
	}
	return v
}

func main() {
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var r req
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			panic(err)
		}
		var d any
		if r.Messages != nil {
			v, err := ollamaValues(r.Messages, r.Tools)
			if err != nil {
				panic(err)
			}
			d = v
		} else {
			dec := json.NewDecoder(bytes.NewReader(r.D))
			dec.UseNumber()
			dec.Decode(&d)
			d = conv(d)
		}
		res := map[string]any{}
		t, err := template.New("t").Option("missingkey=zero").Funcs(funcs).Parse(r.T)
		if err != nil {
			res["perr"] = err.Error()
		} else {
			var b bytes.Buffer
			if err := t.Execute(&b, d); err != nil {
				res["xerr"] = err.Error()
			}
			res["out"] = b.String()
		}
		enc.Encode(res)
	}
}
