// Command etcd runs a single-member etcd server for the local stack's Kubernetes API
// server. It is etcd's own embed package behind a few flags, so that it is built from
// the same module graph as kube-apiserver (the etcd version Kubernetes itself uses).
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory of the member's data")
	clientURL := flag.String("listen-client-url", "", "client URL, e.g. http://127.0.0.1:2379")
	peerURL := flag.String("listen-peer-url", "", "peer URL, e.g. http://127.0.0.1:2380")
	flag.Parse()
	if *dataDir == "" || *clientURL == "" || *peerURL == "" {
		log.Fatal("etcd: --data-dir, --listen-client-url and --listen-peer-url are required")
	}
	client, err := url.Parse(*clientURL)
	if err != nil {
		log.Fatalf("etcd: --listen-client-url: %v", err)
	}
	peer, err := url.Parse(*peerURL)
	if err != nil {
		log.Fatalf("etcd: --listen-peer-url: %v", err)
	}

	cfg := embed.NewConfig()
	cfg.Name = "stack"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		log.Printf("etcd: ready on %s", client)
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	}
}
