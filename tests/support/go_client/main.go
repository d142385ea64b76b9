// A Go program that ignores HTTPS_PROXY: its Transport has no Proxy, as many Go and Rust binaries
// behave. Usage: go_client URL KEY BODY [HOST]; prints {"status", "proto", "body"} as JSON. HOST
// names another host in the Host header (HTTP/2: :authority) than the URL's, its TLS server name.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	transport := &http.Transport{Proxy: nil, ForceAttemptHTTP2: true}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	request, err := http.NewRequest("POST", os.Args[1], strings.NewReader(os.Args[3]))
	if err != nil {
		fail(err)
	}
	if len(os.Args) > 4 {
		request.Host = os.Args[4]
	}
	request.Header.Set("Authorization", "Bearer "+os.Args[2])
	request.Header.Set("Content-Type", "application/json")
	response, err := client.Do(request)
	if err != nil {
		fail(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]any{"status": response.StatusCode, "proto": response.Proto, "body": string(body)})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
