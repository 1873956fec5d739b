package main

// Ollama-shaped template values (mirroring the String forms Ollama's template package gives
// them), so that whole chat prompts with tools can be rendered by Go for comparison.

import (
	"encoding/json"
	"fmt"
	"strings"
)

type PropertyType []string

func (pt PropertyType) String() string {
	if len(pt) == 0 {
		return ""
	}
	if len(pt) == 1 {
		return pt[0]
	}
	return fmt.Sprintf("%v", []string(pt))
}

func (pt *PropertyType) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*pt = []string{s}
		return nil
	}
	var a []string
	err := json.Unmarshal(b, &a)
	*pt = a
	return err
}

func (pt PropertyType) MarshalJSON() ([]byte, error) {
	if len(pt) == 1 {
		return json.Marshal(pt[0])
	}
	return json.Marshal([]string(pt))
}

type ToolProperty struct {
	AnyOf       []ToolProperty          `json:"anyOf,omitempty"`
	Type        PropertyType            `json:"type,omitempty"`
	Items       any                     `json:"items,omitempty"`
	Description string                  `json:"description,omitempty"`
	Enum        []any                   `json:"enum,omitempty"`
	Properties  map[string]ToolProperty `json:"properties,omitempty"`
}

type Props map[string]ToolProperty

func (p Props) String() string {
	if p == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]ToolProperty(p))
	return string(b)
}

type Params struct {
	Type       string   `json:"type"`
	Defs       any      `json:"$defs,omitempty"`
	Items      any      `json:"items,omitempty"`
	Required   []string `json:"required,omitempty"`
	Properties Props    `json:"properties"`
}

func (p *Params) String() string { b, _ := json.Marshal(p); return string(b) }

type ToolFunction struct {
	Name        string `json:"name"`
	Description string `json:"description"` // template.templateToolFunction: no omitempty
	Parameters  Params `json:"parameters"`
}

func (t *ToolFunction) String() string { b, _ := json.Marshal(t); return string(b) }

type Tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function ToolFunction `json:"function"`
}

func (t Tool) String() string { b, _ := json.Marshal(t); return string(b) }

type Tools []Tool

func (t Tools) String() string { b, _ := json.Marshal(t); return string(b) }

type Args map[string]any

func (a Args) String() string {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(a))
	return string(b)
}

type CallFunction struct {
	Index     int
	Name      string
	Arguments Args
}

type Call struct {
	ID       string
	Function CallFunction
}

type Message struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []Call
	ToolName   string
	ToolCallID string
}

type apiMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Thinking  string `json:"thinking"`
	ToolName  string `json:"tool_name"`
	ToolCalls []struct {
		Function struct {
			Index     int            `json:"index"`
			Name      string         `json:"name"`
			Arguments map[string]any `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// ollamaValues builds the data of Ollama's .Messages path: collated messages (same-role runs
// joined by a blank line, tool messages kept apart), system messages joined into .System.
func ollamaValues(msgsJSON, toolsJSON json.RawMessage) (map[string]any, error) {
	var msgs []apiMessage
	if err := json.Unmarshal(msgsJSON, &msgs); err != nil {
		return nil, err
	}
	var system []string
	var out []*Message
	for _, m := range msgs {
		m.Role = strings.ToLower(m.Role)
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == m.Role && m.Role != "tool" {
			out[len(out)-1].Content += "\n\n" + m.Content
			continue
		}
		msg := &Message{Role: m.Role, Content: m.Content, Thinking: m.Thinking, ToolName: m.ToolName}
		for _, c := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, Call{Function: CallFunction{
				Index: c.Function.Index, Name: c.Function.Name, Arguments: Args(c.Function.Arguments)}})
		}
		out = append(out, msg)
	}
	var tools Tools
	if len(toolsJSON) > 0 && string(toolsJSON) != "null" {
		if err := json.Unmarshal(toolsJSON, &tools); err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"System": strings.Join(system, "\n\n"), "Messages": out, "Tools": tools,
		"Response": "", "Think": false, "ThinkLevel": "", "IsThinkSet": false,
	}, nil
}
