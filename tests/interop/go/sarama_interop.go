// A Go client (Debian's sarama) against arrowlog serve: produce with timestamps,
// consume in a group of one member and then two (a rebalance), commit, and look
// offsets up by time. Built and run by tests/interop/test_go_client.py; prints one
// JSON object on stdout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type member struct {
	name   string
	mu     *sync.Mutex
	seen   map[string]bool
	claims map[string][]int32 // generation -> partitions claimed by this member
	ready  chan struct{}
	once   sync.Once
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []int32
	for _, ps := range s.Claims() {
		parts = append(parts, ps...)
	}
	m.claims[strconv.Itoa(int(s.GenerationID()))] = parts
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		m.mu.Lock()
		m.seen[string(msg.Value)] = true
		m.mu.Unlock()
		s.MarkMessage(msg, "")
		m.once.Do(func() { close(m.ready) })
	}
	return nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = "sarama-interop"
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.Retention = 24 * time.Hour // OffsetCommit v2
	c.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	c.Consumer.Group.Rebalance.Strategy = sarama.BalanceStrategyRange
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	return c
}

func main() {
	if len(os.Args) != 5 {
		fail("usage: sarama_interop BOOTSTRAP TOPIC GROUP N")
	}
	addrs, topic, group := []string{os.Args[1]}, os.Args[2], os.Args[3]
	n, _ := strconv.Atoi(os.Args[4])
	base := time.Unix(1700000000, 0)
	out := map[string]interface{}{}

	producer, err := sarama.NewSyncProducer(addrs, config())
	if err != nil {
		fail("producer: %v", err)
	}
	offsets := map[string]int64{}
	for i := 0; i < n; i++ {
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprintf("m-%d", i)),
			Timestamp: base.Add(time.Duration(i) * time.Second)})
		if err != nil {
			fail("produce %d: %v", i, err)
		}
		offsets[fmt.Sprintf("%d:%d", p, off)] = int64(i)
	}
	producer.Close()
	out["produced"] = len(offsets)

	client, err := sarama.NewClient(addrs, config())
	if err != nil {
		fail("client: %v", err)
	}
	// the first offset at or after message 50's timestamp, in each partition
	times := map[string]int64{}
	for _, p := range []int32{0, 1} {
		off, err := client.GetOffset(topic, p, base.Add(50*time.Second).UnixNano()/int64(time.Millisecond))
		if err != nil {
			fail("offset for time: %v", err)
		}
		times[strconv.Itoa(int(p))] = off
	}
	out["offsets_for_times"] = times
	client.Close()

	mu := &sync.Mutex{}
	newMember := func(name string) *member {
		return &member{name: name, mu: mu, seen: map[string]bool{}, claims: map[string][]int32{},
			ready: make(chan struct{})}
	}
	run := func(ctx context.Context, m *member, wg *sync.WaitGroup) {
		defer wg.Done()
		g, err := sarama.NewConsumerGroup(addrs, group, config())
		if err != nil {
			fail("group %s: %v", m.name, err)
		}
		defer g.Close()
		go func() {
			for err := range g.Errors() {
				fmt.Fprintf(os.Stderr, "group %s: %v\n", m.name, err)
			}
		}()
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "consume %s: %v\n", m.name, err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	a, b := newMember("a"), newMember("b")
	wg.Add(1)
	go run(ctx, a, &wg)
	select {
	case <-a.ready:
	case <-time.After(60 * time.Second):
		fail("member a consumed nothing in 60 s")
	}
	wg.Add(1)
	go run(ctx, b, &wg) // joining makes the group rebalance
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		union := map[string]bool{}
		for k := range a.seen {
			union[k] = true
		}
		for k := range b.seen {
			union[k] = true
		}
		done := len(union) == n && len(b.claims) > 0 && len(a.claims) > 1
		mu.Unlock()
		if done {
			out["consumed_unique"] = len(union)
			break
		}
		if time.Now().After(deadline) {
			fail("timed out: %d unique messages, claims a=%v b=%v", len(union), a.claims, b.claims)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel() // the sessions end: their offset managers commit what was marked
	wg.Wait()
	out["claims_a"] = a.claims
	out["claims_b"] = b.claims
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
