// pingpong in Go: two goroutines pass a token back and forth through unbuffered channels,
// GOMAXPROCS=2 -- the peer of bench/pingpong.cpp.
//
// usage: pingpong_go [round trips]   prints: pingpong go <ns per round trip> -
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	n := 200000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	runtime.GOMAXPROCS(2)
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	elapsed := time.Since(start)
	close(ping)
	fmt.Printf("pingpong go %.0f -\n", float64(elapsed.Nanoseconds())/float64(n))
}
