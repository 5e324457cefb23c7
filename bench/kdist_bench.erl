%% SPDX-License-Identifier: Apache-2.0
%%
%% The Erlang side of `kdist bench`. The tool compiles this module into its
%% output directory and starts erl nodes in one of two roles:
%%
%%   kdist_bench:serve()   registers `sink` and `echo` with the same
%%                         protocol as `kdist node`, then runs until its
%%                         standard input closes.
%%   kdist_bench:drive()   reads one command a line from standard input and
%%                         writes one "bench_result ..." line per command:
%%
%%     connect NODE                 -> bench_result connect ok | failed
%%     send NODE SIZE MILLISECONDS  -> bench_result send SENT COUNTED MICROS
%%     ping NODE COUNT              -> bench_result ping COUNT P50 P99 P999
%%
%% `send` floods `sink` on NODE with SIZE-byte binaries for MILLISECONDS,
%% then asks {self(), stats}; MICROS runs until that answer arrives, so the
%% messages still in flight are part of the time. COUNTED is the rise of the
%% sink's message counter over the run. `ping` makes COUNT sequential round
%% trips of a 64-byte binary through `echo` after 200 warm-up trips; the
%% percentiles are in microseconds.
-module(kdist_bench).
-export([serve/0, drive/0]).

-define(STATS_TIMEOUT, 120000).
-define(ECHO_TIMEOUT, 5000).
-define(WARMUP_PINGS, 200).

serve() ->
    register(sink, spawn(fun() -> sink(0, 0) end)),
    register(echo, spawn(fun echo/0)),
    io:format("bench_ready ~s~n", [node()]),
    wait_for_eof().

%% {Pid, stats} is answered and not counted, as kdist's sink does; every
%% other message counts with its external term format size.
sink(Messages, Bytes) ->
    receive
        {Pid, stats} when is_pid(Pid) ->
            Pid ! {sink_stats, Messages, Bytes},
            sink(Messages, Bytes);
        Msg ->
            sink(Messages + 1, Bytes + erlang:external_size(Msg))
    end.

echo() ->
    receive
        {Pid, Term} when is_pid(Pid) ->
            Pid ! Term;
        _ ->
            ok
    end,
    echo().

wait_for_eof() ->
    case io:get_line("") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(0);
        _ -> wait_for_eof()
    end.

drive() ->
    io:format("bench_ready ~s~n", [node()]),
    drive_loop().

drive_loop() ->
    case io:get_line("") of
        eof ->
            erlang:halt(0);
        {error, _} ->
            erlang:halt(0);
        Line ->
            Words = string:lexemes(string:trim(Line), " "),
            io:format("bench_result ~s~n", [run_command(Words)]),
            drive_loop()
    end.

run_command(["connect", Node]) ->
    case net_kernel:connect_node(list_to_atom(Node)) of
        true -> "connect ok";
        _ -> "connect failed"
    end;
run_command(["send", Node, Size, Millis]) ->
    {Sent, Counted, Micros} =
        flood(list_to_atom(Node), list_to_integer(Size),
              list_to_integer(Millis)),
    io_lib:format("send ~b ~b ~b", [Sent, Counted, Micros]);
run_command(["ping", Node, Count]) ->
    case ping(list_to_atom(Node), list_to_integer(Count)) of
        {ok, P50, P99, P999} ->
            io_lib:format("ping ~s ~.3f ~.3f ~.3f",
                          [Count, P50, P99, P999]);
        timeout ->
            "ping timeout"
    end;
run_command(Words) ->
    io_lib:format("error unknown command ~p", [Words]).

flood(Node, Size, Millis) ->
    Sink = {sink, Node},
    Bin = crypto:strong_rand_bytes(Size),
    Before = sink_messages(Sink),
    T0 = erlang:monotonic_time(microsecond),
    Deadline = T0 + Millis * 1000,
    %% Reading the clock costs as much as sending a small message, so it is
    %% read once per batch of about 64 KiB.
    Batch = max(1, 65536 div max(1, Size)),
    Sent = flood_loop(Sink, Bin, Batch, Deadline, 0),
    After = sink_messages(Sink),
    T1 = erlang:monotonic_time(microsecond),
    {Sent, After - Before, T1 - T0}.

flood_loop(Sink, Bin, Batch, Deadline, Sent) ->
    send_batch(Sink, Bin, Batch),
    case erlang:monotonic_time(microsecond) >= Deadline of
        true -> Sent + Batch;
        false -> flood_loop(Sink, Bin, Batch, Deadline, Sent + Batch)
    end.

send_batch(_Sink, _Bin, 0) ->
    ok;
send_batch(Sink, Bin, N) ->
    Sink ! Bin,
    send_batch(Sink, Bin, N - 1).

sink_messages(Sink) ->
    Sink ! {self(), stats},
    receive
        {sink_stats, Messages, _Bytes} -> Messages
    after ?STATS_TIMEOUT ->
        -1
    end.

ping(Node, Count) ->
    Echo = {echo, Node},
    Bin = crypto:strong_rand_bytes(64),
    case round_trips(Echo, Bin, ?WARMUP_PINGS, []) of
        timeout ->
            timeout;
        _ ->
            case round_trips(Echo, Bin, Count, []) of
                timeout -> timeout;
                Samples -> percentiles(lists:sort(Samples))
            end
    end.

round_trips(_Echo, _Bin, 0, Acc) ->
    Acc;
round_trips(Echo, Bin, N, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Echo ! {self(), Bin},
    receive
        Bin ->
            T1 = erlang:monotonic_time(nanosecond),
            round_trips(Echo, Bin, N - 1, [T1 - T0 | Acc])
    after ?ECHO_TIMEOUT ->
        timeout
    end.

%% Nearest-rank percentiles of sorted nanosecond samples, in microseconds.
percentiles(Sorted) ->
    Len = length(Sorted),
    Rank = fun(P) -> lists:nth(max(1, min(Len, ceil(P * Len))), Sorted) end,
    {ok, Rank(0.50) / 1000, Rank(0.99) / 1000, Rank(0.999) / 1000}.
