// grpc-go peer for bench/run.sh's grpc-* scenarios: ringd.v1.Users/GetUser
// (and BatchGetUsers) with grpc-go, answering ringd demo's records from memory.
//
// The records are generated exactly as `ringd demo` makes them (store/demo.c)
// and encoded once at start-up as ringd.v1.User messages (a Struct of the
// record), the same bytes ringd stores, so both servers send the same answer.
// A pass-through codec hands those bytes to grpc-go as they are: the peer does
// no protobuf work per request beyond reading the request's id, like ringd.
//
// Built offline in GOPATH mode against Debian's golang-google-grpc-dev
// (bench/peers/grpc-go/build.sh); run with GOMAXPROCS=1 (one core, as ringd's
// --shards 1).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// rawCodec replaces the "proto" codec: messages are []byte, already encoded.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func init() { encoding.RegisterCodec(rawCodec{}) }

// ---- the demo records (store/demo.c) ----

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func plan(h uint64) string {
	p := h % 100
	switch {
	case p < 60:
		return "free"
	case p < 85:
		return "pro"
	case p < 97:
		return "team"
	}
	return "enterprise"
}

const demoEpoch = 1704067200

// ---- protobuf, by hand (as store/pb.c writes it) ----

func varint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func lenField(b []byte, tag byte, content []byte) []byte {
	b = append(b, tag)
	b = varint(b, uint64(len(content)))
	return append(b, content...)
}

// A Struct map entry {key, Value{string or number}}.
func entry(key string, str *string, num float64) []byte {
	var val []byte
	if str != nil {
		val = lenField(nil, 3<<3|2, []byte(*str))
	} else {
		val = append(val, 2<<3|1)
		val = binary.LittleEndian.AppendUint64(val, math.Float64bits(num))
	}
	e := lenField(nil, 1<<3|2, []byte(key))
	return lenField(e, 2<<3|2, val)
}

func userMessage(id uint64) []byte {
	h := mix(id)
	t := time.Unix(int64(demoEpoch+(h>>8)%(366*86400)), 0).UTC()
	name := fmt.Sprintf("User %d", id)
	email := fmt.Sprintf("user%d@example.com", id)
	pl := plan(h)
	created := t.Format("2006-01-02T15:04:05Z")
	var st []byte
	st = lenField(st, 1<<3|2, entry("id", nil, float64(id)))
	st = lenField(st, 1<<3|2, entry("name", &name, 0))
	st = lenField(st, 1<<3|2, entry("email", &email, 0))
	st = lenField(st, 1<<3|2, entry("plan", &pl, 0))
	st = lenField(st, 1<<3|2, entry("created_at", &created, 0))
	u := varint([]byte{1<<3 | 0}, id)
	return lenField(u, 2<<3|2, st)
}

// ---- the service ----

var users [][]byte // users[id-1]

func lookup(id uint64) ([]byte, bool) {
	if id == 0 || id > uint64(len(users)) {
		return nil, false
	}
	return users[id-1], true
}

// The ids of a request's field 1 (varint or packed); ok false when malformed.
func ids(in []byte) ([]uint64, bool) {
	var out []uint64
	for len(in) > 0 {
		key, n := binary.Uvarint(in)
		if n <= 0 {
			return nil, false
		}
		in = in[n:]
		switch key {
		case 1<<3 | 0:
			v, m := binary.Uvarint(in)
			if m <= 0 {
				return nil, false
			}
			out = append(out, v)
			in = in[m:]
		case 1<<3 | 2:
			l, m := binary.Uvarint(in)
			if m <= 0 || l > uint64(len(in)-m) {
				return nil, false
			}
			p := in[m : m+int(l)]
			for len(p) > 0 {
				v, k := binary.Uvarint(p)
				if k <= 0 {
					return nil, false
				}
				out = append(out, v)
				p = p[k:]
			}
			in = in[m+int(l):]
		default:
			return nil, false
		}
	}
	return out, true
}

func getUser(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	got, ok := ids(in)
	if !ok || len(got) == 0 || got[len(got)-1] == 0 {
		return nil, status.Error(codes.InvalidArgument, "bad id")
	}
	u, found := lookup(got[len(got)-1])
	if !found {
		return nil, status.Error(codes.NotFound, "user not found")
	}
	return &u, nil
}

func batchGetUsers(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	got, ok := ids(in)
	if !ok || len(got) > 1000 {
		return nil, status.Error(codes.InvalidArgument, "bad ids")
	}
	var out, missing []byte
	for _, id := range got {
		if u, found := lookup(id); found {
			out = lenField(out, 1<<3|2, u)
		} else {
			missing = varint(missing, id)
		}
	}
	if len(missing) > 0 {
		out = lenField(out, 2<<3|2, missing)
	}
	return &out, nil
}

var usersDesc = grpc.ServiceDesc{
	ServiceName: "ringd.v1.Users",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetUser", Handler: getUser},
		{MethodName: "BatchGetUsers", Handler: batchGetUsers},
	},
	Streams: []grpc.StreamDesc{},
}

func main() {
	listen := flag.String("listen", "127.0.0.1:29080", "address to listen on")
	n := flag.Uint64("users", 1000000, "demo users to answer (ids 1..N)")
	flag.Parse()
	users = make([][]byte, *n)
	for i := range users {
		users[i] = userMessage(uint64(i + 1))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&usersDesc, struct{}{})
	fmt.Fprintf(os.Stderr, "grpc-go peer: %d users, listening on %s\n", *n, ln.Addr())
	if err := s.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
