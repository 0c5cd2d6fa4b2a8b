// skynet in Go: goroutines and channels, the peer weft is most often weighed against.
// Each goroutine starts 10 children and sums what they send back, down to `leaves` leaves.
//
// usage: skynet_go [threads] [leaves]   (GOMAXPROCS = threads)
// prints: skynet <leaves> <sum> <seconds>, like bench_skynet
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func skynet(out chan<- int64, num, size int64) {
	if size == 1 {
		out <- num
		return
	}
	results := make(chan int64, 10)
	child := size / 10
	for i := int64(0); i < 10; i++ {
		go skynet(results, num+i*child, child)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-results
	}
	out <- sum
}

func main() {
	threads, leaves := 2, int64(1000000)
	if len(os.Args) > 1 {
		threads, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		leaves, _ = strconv.ParseInt(os.Args[2], 10, 64)
	}
	runtime.GOMAXPROCS(threads)
	start := time.Now()
	out := make(chan int64)
	go skynet(out, 0, leaves)
	sum := <-out
	fmt.Printf("skynet %d %d %.4f\n", leaves, sum, time.Since(start).Seconds())
	if sum != leaves*(leaves-1)/2 {
		os.Exit(1)
	}
}
