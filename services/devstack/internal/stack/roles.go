package stack

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finsvc/finance/pkg/postgres"
)

// serviceRoles maps each process of the stack that connects to PostgreSQL
// to the role migrations 00012 and 00015 made for it, with only the grants
// its SQL needs (docs/security.md, "Least privilege"). "financectl" is the
// periodic reconciler (financectl reconcile --watch), which settles as
// finance_reconciler. The operator's financectl commands (migrate, seed,
// topics, verify, recover, ...) and the vacuum job (VACUUM is the owner's)
// are not here: they connect as the URL's user, the schema's owner.
var serviceRoles = map[string]string{
	"gateway":          "finance_gateway",
	"outbox-relay":     "finance_outbox_relay",
	"dispatcher":       "finance_dispatcher",
	"status-consumer":  "finance_status_consumer",
	"webhook-delivery": "finance_webhook_delivery",
	"financectl":       ReconcilerRole,
}

// ReconcilerRole is the role (migration 00015) of the reconciler and of the
// gateway console's resolutions: it settles, and may do nothing else.
const ReconcilerRole = "finance_reconciler"

// GatewayReconcileApp is the application_name of the connection the
// gateway's console resolves unknown payments with
// (GATEWAY_RECONCILE_DATABASE_URL), so that pg_stat_activity tells it from
// the gateway's own connections, which carry "gateway".
const GatewayReconcileApp = "gateway-reconcile"

// ReconcilerApp is the application_name of the periodic reconciler's
// connections, so that pg_stat_activity tells them from the vacuum job's
// and the operator's financectl, which carry "financectl" and the owner.
const ReconcilerApp = "financectl-reconcile"

// gatewayReconcileURL returns the gateway's GATEWAY_RECONCILE_DATABASE_URL
// under service roles: dbURL as ReconcilerRole (roleURL), since a
// resolution settles (status, entries, balances) and finance_gateway may
// not, with application_name GatewayReconcileApp. The gateway, which faces
// the internet, so never holds the owner's credentials. dbURL must be a
// postgres:// URL, as for roleURL.
func gatewayReconcileURL(dbURL string) (string, error) {
	u, err := roleURL(dbURL, ReconcilerRole)
	if err != nil {
		return "", err
	}
	return withApplicationName(u, GatewayReconcileApp), nil
}

// withApplicationName returns u, a URL made by roleURL, with
// application_name app in place of any it sets.
func withApplicationName(u, app string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u // roleURL parsed it already
	}
	q := p.Query()
	q.Set("application_name", app)
	p.RawQuery = q.Encode()
	return p.String()
}

// serviceRoleURLs returns, for each service of serviceRoles, dbURL with
// the service's role as its user (roleURL).
func serviceRoleURLs(dbURL string) (map[string]string, error) {
	urls := make(map[string]string, len(serviceRoles))
	for service, role := range serviceRoles {
		u, err := roleURL(dbURL, role)
		if err != nil {
			return nil, err
		}
		urls[service] = u
	}
	return urls, nil
}

// roleURL returns dbURL with role as its user: the same host, database and
// parameters, and no password, since the owner's password is not the
// role's. The roles have none in development, where PostgreSQL trusts
// local connections; a server that asks for one finds it in ~/.pgpass
// (PGPASSFILE), which the services' driver reads. dbURL must be a
// postgres:// URL, not a keyword/value string.
func roleURL(dbURL, role string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("DATABASE_URL %s: the service roles need a postgres:// URL "+
			"(or DEVSTACK_SERVICE_ROLES=false to run every service as the URL's user)", postgres.RedactURL(dbURL))
	}
	u.User = url.User(role)
	q := u.Query()
	if q.Has("user") || q.Has("password") {
		q.Del("user")
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// checkRoleLogins connects once as each role of urls and checks that the
// session's user is the role, so that a server that refuses a role (no
// such role: the database was not migrated by this version; a password
// asked for and not found) stops devstack with one clear error instead of
// services that restart forever.
func checkRoleLogins(ctx context.Context, urls map[string]string) error {
	for service, u := range urls {
		if err := checkLogin(ctx, u, serviceRoles[service]); err != nil {
			return fmt.Errorf("%s's database role: %w (DEVSTACK_SERVICE_ROLES=false runs every service as the URL's user; "+
				"docs/security.md, \"Least privilege\")", service, err)
		}
	}
	return nil
}

func checkLogin(ctx context.Context, u, role string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return fmt.Errorf("connect as %s: %w", role, err)
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
		return fmt.Errorf("connect as %s: %w", role, err)
	}
	if who != role {
		return fmt.Errorf("connected as %s, want %s", who, role)
	}
	return nil
}
