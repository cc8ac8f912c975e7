//go:build tools

// Package main pins modules that the code will use before it imports them,
// so parallel work never has to edit go.mod.
package main

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/go-ldap/ldap/v3"
	_ "github.com/gorilla/websocket"
	_ "github.com/hashicorp/golang-lru/v2"
	_ "github.com/jimlambrt/gldap"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/robfig/cron/v3"
	_ "github.com/valyala/fasthttp"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/sync/singleflight"
	_ "gopkg.in/yaml.v3"
)
