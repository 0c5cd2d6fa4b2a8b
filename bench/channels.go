// channels in Go: the peer of bench/channels.cpp, GOMAXPROCS=2, the same work on both sides.
//
// usage: channels_go MODE [n]   (MODE: pingpong mpmc pool mutex select)
// prints: <mode> go <figure>   (ns per round trip, messages/s, jobs/s, ns per pair, ns per value)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func spinWork(seed uint64) uint64 {
	x := seed | 1
	for i := 0; i < 330; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

func pingpong(n int) {
	ping, pong := make(chan int), make(chan int)
	start := time.Now()
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	close(ping)
	fmt.Printf("pingpong go %.0f\n", float64(time.Since(start).Nanoseconds())/float64(n))
}

func mpmc(n int) {
	ch := make(chan int, 1024)
	per := n / 4
	var producers, consumers sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	start := time.Now()
	for c := 0; c < 4; c++ {
		consumers.Add(1)
		go func() {
			s := 0
			for v := range ch {
				s += v
			}
			mu.Lock()
			sum += s
			mu.Unlock()
			consumers.Done()
		}()
	}
	for p := 0; p < 4; p++ {
		producers.Add(1)
		go func() {
			for i := 0; i < per; i++ {
				ch <- i
			}
			producers.Done()
		}()
	}
	producers.Wait()
	close(ch)
	consumers.Wait()
	s := time.Since(start).Seconds()
	if sum != 4*(per*(per-1)/2) {
		fmt.Fprintln(os.Stderr, "mpmc: wrong sum")
	}
	fmt.Printf("mpmc go %.0f\n", float64(4*per)/s)
}

func pool(n int) {
	jobs, results := make(chan int, 64), make(chan int, 64)
	var workers sync.WaitGroup
	start := time.Now()
	for w := 0; w < 100; w++ {
		workers.Add(1)
		go func() {
			for j := range jobs {
				results <- int(spinWork(uint64(j)))
			}
			workers.Done()
		}()
	}
	done := make(chan uint64)
	go func() {
		var c uint64
		for i := 0; i < n; i++ {
			c += uint64(<-results)
		}
		done <- c
	}()
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	workers.Wait()
	check := <-done
	s := time.Since(start).Seconds()
	fmt.Printf("pool go %.0f\n", float64(n)/s)
	if check == 1 {
		fmt.Fprintln(os.Stderr, "(unlikely)")
	}
}

func mutex(n int) {
	var m sync.Mutex
	counter := 0
	per := n / 100
	var g sync.WaitGroup
	start := time.Now()
	for f := 0; f < 100; f++ {
		g.Add(1)
		go func() {
			for i := 0; i < per; i++ {
				m.Lock()
				counter++
				m.Unlock()
			}
			g.Done()
		}()
	}
	g.Wait()
	s := time.Since(start).Seconds()
	if counter != 100*per {
		fmt.Fprintln(os.Stderr, "mutex: lost increments")
	}
	fmt.Printf("mutex go %.1f\n", s*1e9/float64(100*per))
}

func selectBench(n int) {
	var in [4]chan int
	per := n / 4
	for i := range in {
		in[i] = make(chan int)
	}
	start := time.Now()
	for i := range in {
		c := in[i]
		go func() {
			for j := 0; j < per; j++ {
				c <- j
			}
		}()
	}
	got := 0
	for i := 0; i < 4*per; i++ {
		select {
		case <-in[0]:
		case <-in[1]:
		case <-in[2]:
		case <-in[3]:
		}
		got++
	}
	s := time.Since(start).Seconds()
	if got != 4*per {
		fmt.Fprintln(os.Stderr, "select: lost values")
	}
	fmt.Printf("select go %.0f\n", s*1e9/float64(4*per))
}

func main() {
	runtime.GOMAXPROCS(2)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: channels_go pingpong|mpmc|pool|mutex|select [n]")
		os.Exit(2)
	}
	arg := func(def int) int {
		if len(os.Args) > 2 {
			v, _ := strconv.Atoi(os.Args[2])
			return v
		}
		return def
	}
	switch os.Args[1] {
	case "pingpong":
		pingpong(arg(200000))
	case "mpmc":
		mpmc(arg(2000000))
	case "pool":
		pool(arg(200000))
	case "mutex":
		mutex(arg(2000000))
	case "select":
		selectBench(arg(400000))
	default:
		os.Exit(2)
	}
}
