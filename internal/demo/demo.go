package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Limits of the demo tools.
const (
	maxReadBytes   = 256 << 10
	maxSearchHits  = 50
	maxMessageBody = 16 << 10
)

// Server is the demo upstream's state: its folder and outbox.
type Server struct {
	root string
	mu   sync.Mutex
	now  func() time.Time
}

// New returns the demo server over root, creating it with sample files if it
// does not exist.
func New(root string) (*Server, error) {
	if err := seed(root); err != nil {
		return nil, err
	}
	return &Server{root: root, now: time.Now}, nil
}

// Outbox is the file send_message appends to.
func (s *Server) Outbox() string { return filepath.Join(s.root, "outbox.jsonl") }

// MCPServer builds a fresh *mcp.Server exposing the demo tools.
func (s *Server) MCPServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "portcullis-demo", Version: "1"}, nil)
	yes, no := true, false
	mcp.AddTool(srv, &mcp.Tool{
		Name: "list_files", Description: "List the files in the demo folder.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no},
	}, s.listFiles)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "read_file", Description: "Read a text file from the demo folder.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no},
	}, s.readFile)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "search_files", Description: "Search the demo folder's files for lines containing a phrase (case-insensitive).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no},
	}, s.searchFiles)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "send_message", Description: "Send a message to a recipient by email.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &no, OpenWorldHint: &yes},
	}, s.sendMessage)
	srv.AddResourceTemplate(&mcp.ResourceTemplate{
		Name: "demo-file", URITemplate: "demo:///{+path}", MIMEType: "text/plain",
		Description: "A file in the demo folder.",
	}, s.readResource)
	return srv
}

// ListArgs are list_files' arguments.
type ListArgs struct{}

// ListResult is list_files' result.
type ListResult struct {
	Files []string `json:"files"`
}

func (s *Server) listFiles(ctx context.Context, _ *mcp.CallToolRequest, _ ListArgs) (*mcp.CallToolResult, ListResult, error) {
	var files []string
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	return nil, ListResult{Files: files}, err
}

// ReadArgs are read_file's arguments.
type ReadArgs struct {
	Path string `json:"path" jsonschema:"path relative to the demo folder"`
}

func (s *Server) readFile(ctx context.Context, _ *mcp.CallToolRequest, a ReadArgs) (*mcp.CallToolResult, any, error) {
	b, err := s.read(a.Path)
	if err != nil {
		return nil, nil, err
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
}

func (s *Server) readResource(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	p, ok := strings.CutPrefix(req.Params.URI, "demo:///")
	if !ok {
		return nil, mcp.ResourceNotFoundError(req.Params.URI)
	}
	b, err := s.read(p)
	if err != nil {
		return nil, mcp.ResourceNotFoundError(req.Params.URI)
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: string(b)}}}, nil
}

// resolve confines p to the demo folder, following symlinks.
func (s *Server) resolve(p string) (string, error) {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "\x00") {
		return "", errors.New("path must be relative to the demo folder")
	}
	clean := filepath.Clean(filepath.FromSlash(p))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", errors.New("path leaves the demo folder")
	}
	root, err := filepath.EvalSymlinks(s.root)
	if err != nil {
		return "", err
	}
	full, err := filepath.EvalSymlinks(filepath.Join(root, clean))
	if err != nil {
		return "", fmt.Errorf("no such file: %s", p)
	}
	if full != root && !strings.HasPrefix(full, root+string(filepath.Separator)) {
		return "", errors.New("path leaves the demo folder")
	}
	return full, nil
}

func (s *Server) read(p string) ([]byte, error) {
	full, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(full)
	if err != nil {
		return nil, fmt.Errorf("no such file: %s", p)
	}
	defer f.Close()
	b := make([]byte, maxReadBytes+1)
	n, _ := f.Read(b)
	if n > maxReadBytes {
		return nil, fmt.Errorf("file exceeds %d bytes", maxReadBytes)
	}
	return b[:n], nil
}

// SearchArgs are search_files' arguments.
type SearchArgs struct {
	Query string `json:"query" jsonschema:"phrase to look for"`
}

// SearchResult is search_files' result.
type SearchResult struct {
	Hits []Hit `json:"hits"`
}

// Hit is one matching line.
type Hit struct {
	Path string `json:"path"`
	Line int    `json:"line"`
	Text string `json:"text"`
}

func (s *Server) searchFiles(ctx context.Context, _ *mcp.CallToolRequest, a SearchArgs) (*mcp.CallToolResult, SearchResult, error) {
	q := strings.ToLower(strings.TrimSpace(a.Query))
	if q == "" {
		return nil, SearchResult{}, errors.New("query must not be empty")
	}
	res := SearchResult{Hits: []Hit{}}
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || len(res.Hits) >= maxSearchHits {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		rel, _ := filepath.Rel(s.root, p)
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan() && len(res.Hits) < maxSearchHits; n++ {
			if strings.Contains(strings.ToLower(sc.Text()), q) {
				res.Hits = append(res.Hits, Hit{Path: filepath.ToSlash(rel), Line: n, Text: sc.Text()})
			}
		}
		return nil
	})
	return nil, res, err
}

// SendArgs are send_message's arguments.
type SendArgs struct {
	To      string `json:"to" jsonschema:"recipient email address"`
	Subject string `json:"subject,omitempty"`
	Body    string `json:"body"`
}

// SendResult is send_message's result.
type SendResult struct {
	Sent bool   `json:"sent"`
	ID   string `json:"id"`
}

func (s *Server) sendMessage(ctx context.Context, _ *mcp.CallToolRequest, a SendArgs) (*mcp.CallToolResult, SendResult, error) {
	if !strings.Contains(a.To, "@") || len(a.Body) > maxMessageBody {
		return nil, SendResult{}, errors.New("need a recipient address and a body under 16 KiB")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("msg-%d", s.now().UnixNano())
	line, _ := json.Marshal(map[string]string{"id": id, "to": a.To, "subject": a.Subject, "body": a.Body})
	f, err := os.OpenFile(s.Outbox(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, SendResult{}, err
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return nil, SendResult{}, err
	}
	return nil, SendResult{Sent: true, ID: id}, nil
}

var samples = map[string]string{
	"README.txt":          "This is the Portcullis demo folder. The demo agent may read and search these files.\n",
	"notes/meeting.txt":   "Q3 planning: ship the gateway, then identity. Action: Alice to send the summary to bob@example.com.\n",
	"notes/todo.txt":      "- review the audit log\n- rotate the demo keys\n- write the threat model\n",
	"reports/summary.txt": "Quarterly summary: 12 agents, 40 tools, 0 incidents.\n",
}

func seed(root string) error {
	if _, err := os.Stat(root); err == nil {
		return nil
	}
	for name, body := range samples {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("seed demo folder: %w", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return fmt.Errorf("seed demo folder: %w", err)
		}
	}
	return nil
}
