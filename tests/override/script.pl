# tests/override/script.pl - a Perl workload on generated lines (stdin):
# hashes, arrays, regexes, sprintf, sort. Deterministic output.
use strict;
use warnings;
my (%count, %len, @rows);
while (my $line = <STDIN>) {
    chomp $line;
    my ($w, $n, $v, $i) = split / /, $line;
    $count{substr($w, 0, 2)}++;
    $len{length $v} += $n;
    push @rows, [$w, $n, $v] if $v =~ /^[a-f]/;
}
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
print join(",", map { "$_=$count{$_}" } @top), "\n";
print join(" ", map { sprintf "%d:%d", $_, $len{$_} } sort { $a <=> $b } keys %len), "\n";
my @s = sort { $a->[1] <=> $b->[1] || $a->[0] cmp $b->[0] } @rows;
print scalar(@rows), " rows; first ", join("|", @{$s[0]}), "; last ", join("|", @{$s[-1]}), "\n";
my $joined = join "", map { $_->[2] } @rows[0 .. 99];
(my $r = $joined) =~ s/([aeiou])/uc $1/ge;
print length($r), " ", substr($r, 0, 40), "\n";
