package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// orderAPI is the small in-memory order service that `eventtap demo` puts
// behind the sidecar. It stands for the legacy API eventtap is made for: it
// knows nothing about events.
type orderAPI struct {
	mu        sync.Mutex
	nextOrder int
	nextShip  int
	orders    map[int]map[string]any
	shipments map[string]map[string]any
}

func newOrderAPI() *orderAPI {
	return &orderAPI{orders: map[int]map[string]any{}, shipments: map[string]map[string]any{}}
}

func (a *orderAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders", a.list)
	mux.HandleFunc("POST /orders", a.create)
	mux.HandleFunc("GET /orders/{id}", a.withOrder(func(w http.ResponseWriter, _ *http.Request, o map[string]any) {
		writeJSON(w, http.StatusOK, o)
	}))
	mux.HandleFunc("PATCH /orders/{id}", a.withOrder(a.patch))
	mux.HandleFunc("POST /orders/{id}/cancel", a.withOrder(func(w http.ResponseWriter, _ *http.Request, o map[string]any) {
		o["status"] = "CANCELED"
		o["updatedAt"] = time.Now().UTC().Format(time.RFC3339)
		writeJSON(w, http.StatusOK, o)
	}))
	mux.HandleFunc("POST /orders/{id}/shipments", a.withOrder(a.ship))
	mux.HandleFunc("DELETE /shipments/{id}", a.cancelShipment)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *orderAPI) list(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]map[string]any, 0, len(a.orders))
	for i := 1; i <= a.nextOrder; i++ {
		if o, ok := a.orders[i]; ok {
			out = append(out, o)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *orderAPI) create(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be a JSON object"})
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextOrder++
	in["id"] = a.nextOrder
	in["status"] = "OPEN"
	in["createdAt"] = time.Now().UTC().Format(time.RFC3339)
	a.orders[a.nextOrder] = in
	writeJSON(w, http.StatusCreated, in)
}

// withOrder resolves {id} under the lock and answers 404 for unknown orders.
func (a *orderAPI) withOrder(h func(http.ResponseWriter, *http.Request, map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		a.mu.Lock()
		defer a.mu.Unlock()
		o, ok := a.orders[id]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("order %q not found", r.PathValue("id"))})
			return
		}
		h(w, r, o)
	}
}

func (a *orderAPI) patch(w http.ResponseWriter, r *http.Request, o map[string]any) {
	var in map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be a JSON object"})
		return
	}
	for k, v := range in {
		if k != "id" {
			o[k] = v
		}
	}
	o["updatedAt"] = time.Now().UTC().Format(time.RFC3339)
	writeJSON(w, http.StatusOK, o)
}

func (a *orderAPI) ship(w http.ResponseWriter, _ *http.Request, o map[string]any) {
	a.nextShip++
	s := map[string]any{"id": fmt.Sprintf("shp_%d", a.nextShip), "orderId": o["id"], "status": "LABEL_CREATED"}
	a.shipments[s["id"].(string)] = s
	writeJSON(w, http.StatusCreated, s)
}

func (a *orderAPI) cancelShipment(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.shipments[r.PathValue("id")]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "shipment not found"})
		return
	}
	delete(a.shipments, r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}
