// Command argocd-health runs an Argo CD resource health check, written in Lua, on one
// Kubernetes object the way Argo CD does: the object (JSON on standard input) is the global
// `obj`, and the script returns a table with `status` and `message`, printed as JSON. The
// tests run the health checks Prospector documents on real objects with it.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < object.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var object any
	if err := json.NewDecoder(os.Stdin).Decode(&object); err != nil {
		fail(fmt.Errorf("the object: %w", err))
	}
	state := lua.NewState()
	defer state.Close()
	state.SetGlobal("obj", toLua(state, object))
	if err := state.DoString(string(script)); err != nil {
		fail(err)
	}
	result, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		fail(fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type()))
	}
	out := map[string]string{
		"status":  lua.LVAsString(result.RawGetString("status")),
		"message": lua.LVAsString(result.RawGetString("message")),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// toLua converts decoded JSON as Argo CD converts an object: maps to tables keyed by string,
// lists to 1-based tables.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []any:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argocd-health:", err)
	os.Exit(1)
}
