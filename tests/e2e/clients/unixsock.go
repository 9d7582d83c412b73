// A stand-in for the Go original (vaitekunas/unixsock), standard library only, written against
// the envelope rules its golden bytes show (tests/interop/go-unixsock/README.md):
//
//	go run unixsock.go client SOCK   # a Go client's calls against a jrpc-unix demo service
//	go run unixsock.go server SOCK   # a Go server with the README-style switch handler
//
// Frame: 4-byte big-endian length, ':', the JSON envelope. The receiver reads the length with
// one Read and the body with one more Read, as the original's Receive does.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
)

type Response struct {
	Status  string `json:"status"`
	Error   string `json:"error"`
	Payload string `json:"payload"`
}

type Request struct {
	Cmd      string                 `json:"cmd"`
	Args     map[string]interface{} `json:"args"`
	Response Response               `json:"response"`
	Respond  bool                   `json:"respond"`
	Close    bool                   `json:"close"`
}

func send(conn net.Conn, r *Request) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	head := make([]byte, 5)
	binary.BigEndian.PutUint32(head, uint32(len(body)))
	head[4] = ':'
	_, err = conn.Write(append(head, body...))
	return err
}

func receive(conn net.Conn) (*Request, error) {
	head := make([]byte, 5)
	if n, err := conn.Read(head); err != nil || n != 5 {
		return nil, fmt.Errorf("Receive: reading the length of the message failed (%d bytes, %v)", n, err)
	}
	if head[4] != ':' {
		return nil, fmt.Errorf("Receive: no ':' after the length")
	}
	body := make([]byte, binary.BigEndian.Uint32(head))
	if n, err := conn.Read(body); err != nil || n != len(body) {
		return nil, fmt.Errorf("Receive: short body: %d of %d bytes (%v)", n, len(body), err)
	}
	r := &Request{}
	return r, json.Unmarshal(body, r)
}

type result struct {
	Step     string    `json:"step"`
	Response *Response `json:"response"`
	Error    string    `json:"error,omitempty"`
}

// client runs the calls a migrating Go program makes; one JSON line per step on stdout.
func client(path string) {
	out := json.NewEncoder(os.Stdout)
	call := func(conn net.Conn, step, cmd string, args map[string]interface{}, respond, close bool) {
		res := result{Step: step}
		if err := send(conn, &Request{Cmd: cmd, Args: args, Respond: respond, Close: close}); err != nil {
			res.Error = err.Error()
		} else if respond {
			if r, err := receive(conn); err != nil {
				res.Error = err.Error()
			} else {
				res.Response = &r.Response
			}
		}
		out.Encode(res)
	}
	dial := func() net.Conn {
		conn, err := net.Dial("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return conn
	}
	for _, c := range []struct {
		step, cmd string
		args      map[string]interface{}
	}{
		{"ping", "ping", map[string]interface{}{}},
		{"echo", "echo", map[string]interface{}{"msg": map[string]interface{}{"n": 1, "html": "<a&b>"}}},
		{"subtract", "subtract", map[string]interface{}{"minuend": 42, "subtrahend": 23}},
		{"fail", "fail", map[string]interface{}{"message": "boom"}},
		{"unknown", "no.such.command", map[string]interface{}{}},
		{"bad_args", "subtract", map[string]interface{}{"minuend": 1}},
		{"crash", "crash", nil},
	} {
		conn := dial()
		call(conn, c.step, c.cmd, c.args, true, true)
		conn.Close()
	}
	// respond=false runs its command: the next connection sees its effect
	conn := dial()
	call(conn, "set_silently", "config.set", map[string]interface{}{"key": "from-go", "value": "yes"}, false, true)
	conn.Close()
	// close=false keeps the connection for the next command
	conn = dial()
	call(conn, "keepalive_get", "config.get", map[string]interface{}{"key": "from-go"}, true, false)
	call(conn, "keepalive_incr", "counter.incr", nil, true, false)
	call(conn, "keepalive_last", "ping", nil, true, true)
	conn.Close()
}

// server answers like the Go original with the README-style switch handler.
func server(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("listening")
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func(conn net.Conn) {
			defer conn.Close()
			for {
				r, err := receive(conn)
				if err != nil {
					return
				}
				r.Response = handle(r.Cmd, r.Args)
				if r.Respond {
					if send(conn, r) != nil {
						return
					}
				}
				if r.Close {
					return
				}
			}
		}(conn)
	}
}

func handle(cmd string, args map[string]interface{}) Response {
	switch cmd {
	case "ping":
		return Response{Status: "success", Payload: "pong"}
	case "fail":
		msg, _ := args["message"].(string)
		return Response{Status: "failure", Error: msg}
	case "echo":
		payload, _ := json.Marshal(args)
		return Response{Status: "success", Payload: string(payload)}
	}
	return Response{Status: "failure", Error: fmt.Sprintf("handler: unknown command '%s'", cmd)}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: unixsock client|server SOCK")
		os.Exit(2)
	}
	if os.Args[1] == "client" {
		client(os.Args[2])
	} else {
		server(os.Args[2])
	}
}
